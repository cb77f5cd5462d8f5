/**
 * A second, independent authorization server implementation: the MCP SDK's own
 * authorization-server router (mcpAuthRouter) with an in-memory provider, in front of a
 * resource server guarded by the SDK's requireBearerAuth. Login must work here too, so
 * Tokenkeeper is not tuned to oidc-provider.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  InvalidGrantError,
  InvalidTargetError,
  InvalidTokenError,
} from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import type {
  AuthorizationParams,
  OAuthServerProvider,
} from "@modelcontextprotocol/sdk/server/auth/provider.js";
import {
  createOAuthMetadata,
  getOAuthProtectedResourceMetadataUrl,
  mcpAuthMetadataRouter,
  mcpAuthRouter,
} from "@modelcontextprotocol/sdk/server/auth/router.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { OAuthClientInformationFull, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import { systemClock } from "../../src/core/clock.js";
import { login } from "../../src/manager/login.js";
import { discover } from "../../src/oauth/discovery.js";
import { revokeGrant } from "../../src/oauth/revocation.js";
import { refreshGrant } from "../../src/oauth/token-endpoint.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { followAuthorization } from "../support/browser-agent.js";

// express ships without type declarations here; only what the test touches is typed.
type Handler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;
interface ExpressApp extends Handler {
  use(...handlers: unknown[]): void;
  post(path: string, ...handlers: unknown[]): void;
}
const expressModule = "express";
const express = ((await import(expressModule)) as { default: () => ExpressApp }).default;

/** A minimal in-memory OAuthServerProvider with refresh-token rotation and revocation. */
class InMemoryProvider implements OAuthServerProvider {
  readonly clients = new Map<string, OAuthClientInformationFull>();
  readonly clientsStore = {
    getClient: async (id: string) => this.clients.get(id),
    registerClient: async (client: OAuthClientInformationFull) => {
      this.clients.set(client.client_id, client);
      return client;
    },
  };
  readonly codes = new Map<string, { clientId: string; params: AuthorizationParams }>();
  readonly access = new Map<string, AuthInfo>();
  readonly refresh = new Map<string, { clientId: string; scopes: string[]; resource: string }>();
  readonly seen: { authorizeResource?: string; exchangeResource?: string; refreshResource?: string } = {};

  constructor(readonly resource: () => string) {}

  async authorize(
    client: OAuthClientInformationFull,
    params: AuthorizationParams,
    res: { redirect(url: string): void },
  ): Promise<void> {
    const code = randomUUID();
    this.codes.set(code, { clientId: client.client_id, params });
    this.seen.authorizeResource = params.resource?.href;
    const target = new URL(params.redirectUri);
    target.searchParams.set("code", code);
    if (params.state !== undefined) target.searchParams.set("state", params.state);
    res.redirect(target.href);
  }
  async challengeForAuthorizationCode(_client: OAuthClientInformationFull, code: string): Promise<string> {
    const entry = this.codes.get(code);
    if (!entry) throw new InvalidGrantError("unknown code");
    return entry.params.codeChallenge;
  }
  async exchangeAuthorizationCode(
    client: OAuthClientInformationFull,
    code: string,
    _v?: string,
    _r?: string,
    resource?: URL,
  ): Promise<OAuthTokens> {
    const entry = this.codes.get(code);
    if (!entry || entry.clientId !== client.client_id) throw new InvalidGrantError("invalid code");
    this.codes.delete(code);
    this.seen.exchangeResource = resource?.href;
    if (resource?.href !== this.resource()) throw new InvalidTargetError("unknown resource");
    return this.issue(client.client_id, entry.params.scopes ?? [], resource.href);
  }
  async exchangeRefreshToken(
    client: OAuthClientInformationFull,
    refreshToken: string,
    _scopes?: string[],
    resource?: URL,
  ): Promise<OAuthTokens> {
    const entry = this.refresh.get(refreshToken);
    if (!entry || entry.clientId !== client.client_id) throw new InvalidGrantError("invalid refresh token");
    this.refresh.delete(refreshToken);
    this.seen.refreshResource = resource?.href;
    return this.issue(client.client_id, entry.scopes, entry.resource);
  }
  async verifyAccessToken(token: string): Promise<AuthInfo> {
    const info = this.access.get(token);
    if (!info || (info.expiresAt ?? 0) < Date.now() / 1000)
      throw new InvalidTokenError("invalid or expired token");
    return info;
  }
  async revokeToken(_client: OAuthClientInformationFull, request: { token: string }): Promise<void> {
    this.refresh.delete(request.token);
    this.access.delete(request.token);
  }
  private issue(clientId: string, scopes: string[], resource: string): OAuthTokens {
    const accessToken = randomUUID();
    const refreshToken = randomUUID();
    this.access.set(accessToken, {
      token: accessToken,
      clientId,
      scopes,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      resource: new URL(resource),
    });
    this.refresh.set(refreshToken, { clientId, scopes, resource });
    return {
      access_token: accessToken,
      token_type: "bearer",
      expires_in: 3600,
      refresh_token: refreshToken,
      scope: scopes.join(" "),
    };
  }
}

async function listen(): Promise<{ server: Server; origin: string }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

let asServer: Server;
let rsServer: Server;
let mcpUrl = "";
let provider: InMemoryProvider;

before(async () => {
  const as = await listen();
  const rs = await listen();
  asServer = as.server;
  rsServer = rs.server;
  mcpUrl = `${rs.origin}/mcp`;
  provider = new InMemoryProvider(() => mcpUrl);

  const issuerUrl = new URL(as.origin);
  const asApp = express();
  asApp.use(mcpAuthRouter({ provider, issuerUrl, scopesSupported: ["mcp:tools"] }));
  asServer.on("request", asApp);

  const rsApp = express();
  rsApp.use(
    mcpAuthMetadataRouter({
      oauthMetadata: createOAuthMetadata({ provider, issuerUrl, scopesSupported: ["mcp:tools"] }),
      resourceServerUrl: new URL(mcpUrl),
      scopesSupported: ["mcp:tools"],
    }),
  );
  rsApp.post(
    "/mcp",
    requireBearerAuth({
      verifier: provider,
      resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(new URL(mcpUrl)),
    }),
    (_req: IncomingMessage, res: ServerResponse) => {
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: {} }));
    },
  );
  rsServer.on("request", rsApp);
});

after(async () => {
  for (const s of [asServer, rsServer]) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

describe("login against the MCP SDK's authorization server", () => {
  it("discovers it: SDK-style challenge, PRM, an issuer with a trailing slash", async () => {
    const d = await discover(mcpUrl, { clock: systemClock });
    assert.equal(d.authorizationServer.issuer.endsWith("/"), true);
    assert.equal(d.capabilities.pkceS256, true);
    assert.equal(d.capabilities.dynamicRegistration, true);
    assert.equal(d.capabilities.deviceFlow, false);
    assert.equal(d.resource, mcpUrl);
  });

  it("browser flow with DCR; the SDK's bearer middleware accepts the token; refresh and revocation work", async () => {
    const store = new MemoryStore();
    const { record, summary } = await login(
      { mcpUrl, name: "sdk", flow: "browser" },
      {
        store,
        clock: systemClock,
        presentUrl: async (url) => {
          const r = await followAuthorization(url);
          assert.ok(r.reachedCallback);
        },
        presentDeviceCode: () => assert.fail("no device flow here"),
      },
    );
    assert.equal(record.client.kind, "dynamic");
    assert.equal(provider.clients.size, 1);
    assert.equal(provider.seen.authorizeResource, mcpUrl);
    assert.equal(provider.seen.exchangeResource, mcpUrl);
    assert.equal(record.scope, "mcp:tools", "scope from the PRM; no offline_access when not advertised");
    assert.equal(summary.refreshTokenIssued, true);

    const call = (token: string) =>
      fetch(mcpUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: "{}",
      });
    assert.equal((await call(record.tokens!.accessToken.reveal())).status, 200);
    assert.equal((await call("not-a-token")).status, 401);

    const refreshed = await refreshGrant(record, { clock: systemClock });
    assert.equal(provider.seen.refreshResource, mcpUrl);
    assert.equal((await call(refreshed.tokens.accessToken.reveal())).status, 200);

    const current = { ...record, tokens: refreshed.tokens };
    const outcomes = await revokeGrant(current, { clock: systemClock });
    assert.deepEqual(
      outcomes.map((o) => [o.tokenType, o.revoked]),
      [
        ["refresh_token", true],
        ["access_token", true],
      ],
    );
    assert.equal((await call(refreshed.tokens.accessToken.reveal())).status, 401);
    await assert.rejects(refreshGrant(current, { clock: systemClock }), /invalid_grant/);
  });

  it("refuses the device flow the SDK server does not offer, before registering anything", async () => {
    const before = provider.clients.size;
    await assert.rejects(
      login(
        { mcpUrl, name: "sdk-dev", flow: "device" },
        { store: new MemoryStore(), clock: systemClock, presentUrl: () => {}, presentDeviceCode: () => {} },
      ),
      (e: { fields?: { problem?: string } }) => e.fields?.problem === "device_flow_unsupported",
    );
    assert.equal(provider.clients.size, before);
  });
});
