/** Builders for records and token sets used across tests. */
import { type ConnectorRecord, initialState, type TokenSet } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";

export function makeTokens(overrides: Partial<TokenSet> = {}, now = Date.UTC(2030, 0, 1)): TokenSet {
  return {
    accessToken: new Secret("access-token-value-0001"),
    tokenType: "Bearer",
    refreshToken: new Secret("refresh-token-value-0001"),
    scope: "mcp:tools offline_access",
    expiresAt: now + 3_600_000,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
    ...overrides,
  };
}

export function makeRecord(
  name = "demo",
  overrides: Partial<ConnectorRecord> = {},
  now = Date.UTC(2030, 0, 1),
): ConnectorRecord {
  return {
    schema: 1,
    name,
    grant: "authorization_code",
    scope: "mcp:tools offline_access",
    server: {
      mcpUrl: "https://mcp.example.test/mcp",
      resource: "https://mcp.example.test/mcp",
      issuer: "https://auth.example.test",
      metadata: {
        issuer: "https://auth.example.test",
        token_endpoint: "https://auth.example.test/token",
        authorization_endpoint: "https://auth.example.test/authorize",
      },
    },
    client: { kind: "dynamic", clientId: "client-123", tokenEndpointAuthMethod: "none" },
    tokens: makeTokens({}, now),
    state: initialState(),
    settings: {},
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}
