/**
 * Client ID Metadata Documents end to end: an oidc-provider with the feature enabled fetches
 * Tokenkeeper's client document (served by a stub and reached through the provider's `fetch`
 * hook, since a client_id must be an https URL) and authorizes the client it describes.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { exportJWK, generateKeyPair } from "jose";
import Provider, { type KoaContext } from "oidc-provider";
import { systemClock } from "../../src/core/clock.js";
import { peekJwtClaims } from "../../src/core/jwt.js";
import { login } from "../../src/manager/login.js";
import type { FetchLike } from "../../src/oauth/http.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { autoConsent, interactionUrl } from "../bed/auto-consent.js";
import { closeServer, listen } from "../bed/http-util.js";
import type { McpTestServer } from "../bed/mcp-server.js";
import { startMcpServer } from "../bed/mcp-server.js";
import { followAuthorization } from "../support/browser-agent.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { type StubServer, startStub } from "./stub-servers.js";

const CLIENT_ID = "https://client.example.test/tokenkeeper.json";

let stub: StubServer;
let mcp: McpTestServer;
let issuer = "";
let closeAs: () => Promise<void>;
let documentFetches = 0;

/** Sends requests for the client's https origin to the local stub; everything else goes out as is. */
function routed(base: typeof fetch): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin === "https://client.example.test") {
      return base(`${stub.origin}${url.pathname}`, { ...init, dispatcher: undefined } as RequestInit);
    }
    return base(input, init);
  }) as typeof fetch;
}

before(async () => {
  stub = await startStub((req) => {
    if (req.url.pathname !== "/tokenkeeper.json") return { status: 404 };
    documentFetches++;
    return {
      json: {
        client_id: CLIENT_ID,
        client_name: "Tokenkeeper",
        application_type: "native",
        redirect_uris: ["http://127.0.0.1/callback"],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
      },
    };
  });

  let handler:
    | ((req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void)
    | undefined;
  const { server, port } = await listen((req, res) =>
    handler ? handler(req, res) : res.writeHead(503).end(),
  );
  issuer = `http://127.0.0.1:${port}`;
  closeAs = () => closeServer(server);
  const resources = new Map<string, string[]>();

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: randomUUID(), alg: "RS256", use: "sig" }] },
    scopes: ["openid", "offline_access", "mcp:tools", "mcp:admin"],
    responseTypes: ["code"],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientIdMetadataDocument: { enabled: true, ack: "draft-02" },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => ({
          scope: (resources.get(resource) ?? []).join(" "),
          audience: resource,
          accessTokenFormat: "jwt",
          accessTokenTTL: 3600,
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    },
    interactions: { url: interactionUrl },
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    fetch: routed(globalThis.fetch),
  } as ConstructorParameters<typeof Provider>[1]);
  provider.use(
    autoConsent(provider, {
      consent: () => "auto",
      accountId: "cimd-user",
      resourceScopes: (r) => resources.get(r),
      defaultResource: () => undefined,
      oidcScopes: new Set(["openid", "offline_access", "mcp:tools", "mcp:admin"]),
    }) as (ctx: KoaContext, next: () => Promise<void>) => Promise<void>,
  );
  handler = provider.callback();

  mcp = await startMcpServer({ issuer, jwksUri: `${issuer}/jwks` });
  resources.set(mcp.url, ["mcp:tools", "mcp:admin"]);
});

after(async () => {
  await mcp?.close();
  await closeAs?.();
  await stub?.close();
});

describe("client ID metadata document against oidc-provider", () => {
  it("logs in with the document URL as client_id: no registration, a token for the MCP server", async () => {
    const store = new MemoryStore();
    const { record } = await login(
      { mcpUrl: mcp.url, name: "cimd", clientMetadataUrl: CLIENT_ID },
      {
        store,
        clock: systemClock,
        fetch: routed(globalThis.fetch) as FetchLike,
        presentUrl: async (url) => {
          assert.equal(new URL(url).searchParams.get("client_id"), CLIENT_ID);
          const r = await followAuthorization(url);
          assert.ok(
            r.reachedCallback,
            `the authorization did not reach the callback: ${r.finalStatus} ${r.finalBody.slice(0, 200)}`,
          );
        },
        presentDeviceCode: () => assert.fail("not a device login"),
      },
    );
    assert.equal(record.client.kind, "metadata_document");
    assert.equal(record.client.clientId, CLIENT_ID);
    assert.equal(record.client.clientSecret, undefined);
    assert.equal(peekJwtClaims(record.tokens!.accessToken.reveal())?.aud, mcp.url);
    assert.ok(record.tokens!.refreshToken);
    assert.ok(documentFetches >= 2, "both Tokenkeeper and the authorization server read the document");
    assert.ok(await mcpAccepts(mcp.url, record.tokens!.accessToken.reveal()));
  });
});
