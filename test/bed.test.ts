// Tests of the test bed itself: the real authorization server and MCP server, driven the way a
// client would drive them (plain fetch, oauth4webapi, the MCP SDK client).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type CallToolResult, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt, decodeProtectedHeader } from "jose";
import * as oauth from "oauth4webapi";
import { startTestBed, type TestBed } from "./bed/index.js";

const REDIRECT_URI = "http://127.0.0.1:53682/callback";
const insecure = { [oauth.allowInsecureRequests]: true } as const;

// ---------------------------------------------------------------------------------------------
// Client-side helpers (deliberately minimal: the real client is the product's job)

async function discover(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer);
  const res = await oauth.discoveryRequest(url, { algorithm: "oauth2", ...insecure });
  return oauth.processDiscoveryResponse(url, res);
}

async function registerPublicClient(as: oauth.AuthorizationServer): Promise<oauth.Client> {
  const res = await oauth.dynamicClientRegistrationRequest(
    as,
    {
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      client_name: "bed test",
    },
    insecure,
  );
  return oauth.processDynamicClientRegistrationResponse(res);
}

/** Follows the authorization redirects by hand, without cookies, to the client's redirect_uri. */
async function followToCallback(start: URL, redirectUri = REDIRECT_URI): Promise<URL> {
  let url = start;
  for (let hops = 0; hops < 10; hops++) {
    if (url.href.startsWith(redirectUri)) return url;
    const res = await fetch(url, { redirect: "manual" });
    await res.body?.cancel();
    const location = res.headers.get("location");
    assert.ok(location, `expected a redirect from ${url.pathname}, got HTTP ${res.status}`);
    url = new URL(location, url);
  }
  throw new Error("too many redirects");
}

interface Authorized {
  callback: URL;
  tokens: oauth.TokenEndpointResponse;
}

async function authorize(
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  params: { resource?: string; scope?: string; redirectUri?: string },
): Promise<Authorized> {
  const redirectUri = params.redirectUri ?? REDIRECT_URI;
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint as string);
  url.search = new URLSearchParams({
    client_id: client.client_id,
    redirect_uri: redirectUri,
    response_type: "code",
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    ...(params.scope ? { scope: params.scope } : {}),
    ...(params.resource ? { resource: params.resource } : {}),
  }).toString();
  const callback = await followToCallback(url, redirectUri);
  const callbackParams = oauth.validateAuthResponse(as, client, callback, state);
  const res = await oauth.authorizationCodeGrantRequest(
    as,
    client,
    oauth.None(),
    callbackParams,
    redirectUri,
    verifier,
    { ...insecure, additionalParameters: params.resource ? { resource: params.resource } : {} },
  );
  return { callback, tokens: await oauth.processAuthorizationCodeResponse(as, client, res) };
}

function refresh(
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  refreshToken: string,
  resource?: string,
) {
  return oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, {
    ...insecure,
    additionalParameters: resource ? { resource } : {},
  });
}

async function oauthError(res: Response): Promise<{ status: number; error: unknown }> {
  return { status: res.status, error: ((await res.json()) as { error?: unknown }).error };
}

/** One JSON-RPC exchange over Streamable HTTP with plain fetch; parses JSON or SSE answers. */
async function rpc(
  url: string,
  token: string | undefined,
  message: Record<string, unknown>,
  sessionId?: string,
): Promise<{ res: Response; messages: Array<Record<string, unknown>> }> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(sessionId ? { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" } : {}),
    },
    body: JSON.stringify({ jsonrpc: "2.0", ...message }),
  });
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  let messages: Array<Record<string, unknown>> = [];
  if (type.includes("text/event-stream")) {
    messages = text
      .split("\n")
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trim())
      .filter(Boolean)
      .map((d) => JSON.parse(d));
  } else if (type.includes("application/json") && text) {
    messages = [JSON.parse(text)];
  }
  return { res, messages };
}

async function mcpSession(url: string, token: string): Promise<string> {
  const { res, messages } = await rpc(url, token, {
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "bed-test", version: "0" },
    },
  });
  assert.equal(res.status, 200);
  assert.ok(messages[0]?.result, "initialize result");
  const sessionId = res.headers.get("mcp-session-id");
  assert.ok(sessionId);
  const note = await rpc(url, token, { method: "notifications/initialized" }, sessionId);
  assert.equal(note.res.status, 202);
  return sessionId;
}

async function callEcho(url: string, token: string, sessionId: string, text: string) {
  return rpc(
    url,
    token,
    { id: 2, method: "tools/call", params: { name: "echo", arguments: { text } } },
    sessionId,
  );
}

function challengeParams(header: string | null): Record<string, string> {
  assert.ok(header, "WWW-Authenticate header");
  assert.match(header, /^Bearer\b/);
  const out: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1] as string] = m[2] as string;
  return out;
}

async function sdkClient(bed: TestBed, token: string, transport: "streamable" | "sse" = "streamable") {
  const client = new Client({ name: "bed-sdk-test", version: "0" }, { capabilities: { elicitation: {} } });
  client.setRequestHandler(ElicitRequestSchema, async (req) => ({
    action: "accept",
    content: { answer: `you asked: ${req.params.message}` },
  }));
  const headers = { authorization: `Bearer ${token}` };
  await client.connect(
    transport === "sse"
      ? new SSEClientTransport(new URL(bed.mcp.sseUrl), {
          requestInit: { headers },
          eventSourceInit: {
            fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers ?? {}), ...headers } }),
          },
        })
      : new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { requestInit: { headers } }),
  );
  return client;
}

const firstText = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

// ---------------------------------------------------------------------------------------------

describe("test bed", () => {
  let bed: TestBed;
  let as: oauth.AuthorizationServer;

  before(async () => {
    bed = await startTestBed();
    as = await discover(bed.issuer);
  });
  after(async () => {
    await bed.close();
  });

  test("authorization server metadata (RFC 8414 and OIDC discovery) and resource metadata (RFC 9728)", async () => {
    const oauthMeta = await (await fetch(`${bed.issuer}/.well-known/oauth-authorization-server`)).json();
    const oidcMeta = await (await fetch(`${bed.issuer}/.well-known/openid-configuration`)).json();
    assert.deepEqual(oauthMeta, oidcMeta);
    assert.equal(as.issuer, bed.issuer);
    assert.match(bed.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    for (const s of ["openid", "offline_access", "mcp:tools", "mcp:admin"])
      assert.ok(as.scopes_supported?.includes(s));
    assert.deepEqual(as.code_challenge_methods_supported, ["S256"]);
    assert.equal(as.authorization_response_iss_parameter_supported, true);
    for (const g of [
      "authorization_code",
      "refresh_token",
      "client_credentials",
      "urn:ietf:params:oauth:grant-type:device_code",
    ]) {
      assert.ok(as.grant_types_supported?.includes(g), g);
    }
    assert.ok(!as.grant_types_supported?.includes("implicit"));
    assert.ok(as.registration_endpoint && as.revocation_endpoint && as.device_authorization_endpoint);

    assert.equal(
      bed.mcp.resourceMetadataUrl,
      bed.mcpUrl.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"),
    );
    for (const url of [
      bed.mcp.resourceMetadataUrl,
      bed.mcpUrl.replace("/mcp", "/.well-known/oauth-protected-resource"),
    ]) {
      const prm = (await (await fetch(url)).json()) as Record<string, unknown>;
      assert.equal(prm.resource, bed.mcpUrl);
      assert.deepEqual(prm.authorization_servers, [bed.issuer]);
      assert.deepEqual(prm.bearer_methods_supported, ["header"]);
      assert.ok((prm.scopes_supported as string[]).includes("mcp:tools"));
    }
  });

  test("DCR → authorization code + PKCE + resource through auto-consent → JWT → MCP tools/call", async () => {
    bed.as.resetCounters();
    bed.mcp.resetCounters();
    const client = await registerPublicClient(as);
    assert.equal(bed.as.counters.registrations, 1);

    const { callback, tokens } = await authorize(as, client, { resource: bed.mcpUrl, scope: "mcp:tools" });
    assert.equal(callback.searchParams.get("iss"), bed.issuer, "RFC 9207 iss in the authorization response");
    assert.ok(tokens.refresh_token, "refresh token without offline_access");
    assert.equal(tokens.token_type.toLowerCase(), "bearer");
    assert.equal(tokens.expires_in, 3600);
    assert.equal(decodeProtectedHeader(tokens.access_token).alg, "RS256");
    assert.equal(decodeProtectedHeader(tokens.access_token).typ, "at+jwt");
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.aud, bed.mcpUrl);
    assert.equal(claims.iss, bed.issuer);
    assert.equal(claims.sub, "test-user");
    assert.equal(claims.client_id, client.client_id);
    assert.equal(claims.scope, "mcp:tools");
    assert.equal(bed.as.counters.grants.authorization_code, 1);

    const sessionId = await mcpSession(bed.mcpUrl, tokens.access_token);
    const { res, messages } = await callEcho(bed.mcpUrl, tokens.access_token, sessionId, "hello");
    assert.equal(res.status, 200);
    assert.equal(firstText(messages[0]?.result), "hello");
    assert.equal(bed.mcp.counters.toolCalls, 1);
    assert.equal(bed.mcp.lastAuth?.clientId, client.client_id);
  });

  test("DCR: confidential clients get a secret; native clients may use any loopback port (RFC 8252 §7.3)", async () => {
    const confidential = await oauth.processDynamicClientRegistrationResponse(
      await oauth.dynamicClientRegistrationRequest(
        as,
        {
          redirect_uris: ["http://localhost:8765/cb"],
          grant_types: ["authorization_code", "refresh_token"],
          token_endpoint_auth_method: "client_secret_basic",
        },
        insecure,
      ),
    );
    assert.ok(confidential.client_secret);

    const native = await oauth.processDynamicClientRegistrationResponse(
      await oauth.dynamicClientRegistrationRequest(
        as,
        {
          application_type: "native",
          redirect_uris: ["http://127.0.0.1/callback"],
          grant_types: ["authorization_code", "refresh_token"],
          token_endpoint_auth_method: "none",
        },
        insecure,
      ),
    );
    const { tokens } = await authorize(as, native, {
      resource: bed.mcpUrl,
      redirectUri: "http://127.0.0.1:40123/callback",
    });
    assert.equal(decodeJwt(tokens.access_token).aud, bed.mcpUrl);
  });

  test("PKCE is required, S256 only", async () => {
    const client = await registerPublicClient(as);
    const variants: Array<Record<string, string>> = [
      {},
      { code_challenge: "x".repeat(43), code_challenge_method: "plain" },
    ];
    for (const extra of variants) {
      const url = new URL(as.authorization_endpoint as string);
      url.search = new URLSearchParams({
        client_id: client.client_id,
        redirect_uri: REDIRECT_URI,
        response_type: "code",
        state: "s",
        ...extra,
      }).toString();
      const callback = await followToCallback(url);
      assert.equal(callback.searchParams.get("error"), "invalid_request");
    }
  });

  test("unknown resource is invalid_target; denied consent redirects with access_denied", async () => {
    const client = await registerPublicClient(as);
    await assert.rejects(authorize(as, client, { resource: "http://127.0.0.1:1/elsewhere" }), (err: Error) =>
      /invalid_target/.test(String((err as { error?: string }).error ?? err.message)),
    );
    bed.as.setConsent("deny");
    try {
      await assert.rejects(authorize(as, client, { resource: bed.mcpUrl }), (err: { error?: string }) => {
        assert.equal(err.error, "access_denied");
        return true;
      });
    } finally {
      bed.as.setConsent("auto");
    }
  });

  test("refresh rotates; reusing a rotated refresh token revokes the whole grant", async () => {
    const client = await registerPublicClient(as);
    const { tokens } = await authorize(as, client, { resource: bed.mcpUrl, scope: "mcp:tools" });
    const rt1 = tokens.refresh_token as string;
    bed.as.resetCounters();

    // No `resource` on refresh: still a JWT for the granted resource.
    const second = await oauth.processRefreshTokenResponse(as, client, await refresh(as, client, rt1));
    const rt2 = second.refresh_token as string;
    assert.ok(rt2 && rt2 !== rt1, "rotated");
    assert.equal(decodeJwt(second.access_token).aud, bed.mcpUrl);

    // With `resource`: same.
    const third = await oauth.processRefreshTokenResponse(
      as,
      client,
      await refresh(as, client, rt2, bed.mcpUrl),
    );
    const rt3 = third.refresh_token as string;
    assert.ok(rt3 && rt3 !== rt2);
    assert.equal(decodeJwt(third.access_token).aud, bed.mcpUrl);
    assert.equal(bed.as.counters.refreshGrantsSucceeded, 2);

    // Reuse of rt1 (already rotated): invalid_grant, and oidc-provider revokes the grant...
    const reuse = await refresh(as, client, rt1);
    assert.equal(reuse.status, 400);
    // The wire says nothing about why: the same body as for a revoked, expired or unknown token.
    assert.deepEqual(await reuse.json(), {
      error: "invalid_grant",
      error_description: "grant request is invalid",
    });
    // ...so the newest refresh token is dead too.
    assert.deepEqual(await oauthError(await refresh(as, client, rt3)), {
      status: 400,
      error: "invalid_grant",
    });
    // And a second presentation of rt1 is merely "not found" (it was deleted on first reuse).
    assert.deepEqual(await oauthError(await refresh(as, client, rt1)), {
      status: 400,
      error: "invalid_grant",
    });

    const c = bed.as.counters;
    assert.equal(c.grants.refresh_token, 5);
    assert.equal(c.rejectedRefreshTokens, 3);
    assert.equal(c.refreshTokenReuse, 1);
    assert.deepEqual(c.rejectedRefreshReasons, [
      "refresh token already used",
      "refresh token not found",
      "refresh token not found",
    ]);

    // JWT access tokens are verified locally by the MCP server: revocation does not reach them
    // before they expire.
    const sessionId = await mcpSession(bed.mcpUrl, third.access_token);
    assert.equal((await callEcho(bed.mcpUrl, third.access_token, sessionId, "still")).res.status, 200);
  });

  test("with openid in scope, exchanges that repeat no resource still get a JWT for the granted one", async () => {
    const client = await registerPublicClient(as);
    // The helper repeats `resource` on the code exchange only when given; here it is not, so
    // the exchange relies on the grant, as does the refresh.
    const verifier = oauth.generateRandomCodeVerifier();
    const url = new URL(as.authorization_endpoint as string);
    url.search = new URLSearchParams({
      client_id: client.client_id,
      redirect_uri: REDIRECT_URI,
      response_type: "code",
      scope: "openid mcp:tools",
      resource: bed.mcpUrl,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
    }).toString();
    const params = oauth.validateAuthResponse(as, client, await followToCallback(url), oauth.expectNoState);
    const res = await oauth.authorizationCodeGrantRequest(
      as,
      client,
      oauth.None(),
      params,
      REDIRECT_URI,
      verifier,
      insecure,
    );
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, res);
    assert.ok(tokens.id_token);
    assert.equal(decodeJwt(tokens.access_token).aud, bed.mcpUrl);
    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      client,
      await refresh(as, client, tokens.refresh_token as string),
    );
    assert.equal(decodeJwt(refreshed.access_token).aud, bed.mcpUrl);
    assert.equal(decodeJwt(refreshed.access_token).scope, "mcp:tools");
  });

  test("two concurrent refreshes with one refresh token: one wins, and its new refresh token is dead", async () => {
    const client = await registerPublicClient(as);
    const { tokens } = await authorize(as, client, { resource: bed.mcpUrl });
    const rt = tokens.refresh_token as string;
    bed.as.resetCounters();
    const answers = await Promise.all([refresh(as, client, rt), refresh(as, client, rt)]);
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 400]);
    const winner = answers.find((r) => r.status === 200) as Response;
    const loser = answers.find((r) => r.status === 400) as Response;
    assert.equal(((await loser.json()) as { error: string }).error, "invalid_grant");
    const won = await oauth.processRefreshTokenResponse(as, client, winner);
    assert.ok(won.refresh_token);
    // The loser's request was a reuse, which revoked the grant the winner's new token belongs to.
    assert.deepEqual(await oauthError(await refresh(as, client, won.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });
    assert.equal(bed.as.counters.refreshTokenReuse, 1);
  });

  test("rotation can be turned off", async () => {
    const client = await registerPublicClient(as);
    const { tokens } = await authorize(as, client, { resource: bed.mcpUrl });
    bed.as.setRefreshTokenRotation(false);
    try {
      const a = await oauth.processRefreshTokenResponse(
        as,
        client,
        await refresh(as, client, tokens.refresh_token as string),
      );
      const b = await oauth.processRefreshTokenResponse(
        as,
        client,
        await refresh(as, client, tokens.refresh_token as string),
      );
      assert.equal(a.refresh_token, tokens.refresh_token);
      assert.equal(b.refresh_token, tokens.refresh_token);
    } finally {
      bed.as.setRefreshTokenRotation(true);
    }
  });

  test("MCP server: 401 challenges (missing, invalid, wrong audience) and 403 insufficient_scope", async () => {
    bed.mcp.resetCounters();
    const init = {
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "0" } },
    };

    const missing = await rpc(bed.mcpUrl, undefined, init);
    assert.equal(missing.res.status, 401);
    const m = challengeParams(missing.res.headers.get("www-authenticate"));
    assert.deepEqual(
      m,
      { resource_metadata: bed.mcp.resourceMetadataUrl, scope: "mcp:tools" },
      "no error code when no token (RFC 6750 §3.1)",
    );

    const garbage = await rpc(bed.mcpUrl, "not-a-jwt", init);
    assert.equal(garbage.res.status, 401);
    const g = challengeParams(garbage.res.headers.get("www-authenticate"));
    assert.equal(g.error, "invalid_token");
    assert.equal(g.resource_metadata, bed.mcp.resourceMetadataUrl);

    // A token minted for another resource (audience) is refused.
    const other = "http://127.0.0.1:9/other-mcp";
    bed.as.addResource(other);
    const cc = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
    });
    const ccRes = await oauth.clientCredentialsGrantRequest(
      as,
      cc,
      oauth.ClientSecretBasic(cc.client_secret as string),
      { resource: other },
      insecure,
    );
    const otherToken = (await oauth.processClientCredentialsResponse(as, cc, ccRes)).access_token;
    const wrongAud = await rpc(bed.mcpUrl, otherToken, init);
    assert.equal(wrongAud.res.status, 401);
    assert.equal(challengeParams(wrongAud.res.headers.get("www-authenticate")).error, "invalid_token");
    assert.equal(bed.mcp.counters.unauthorized, 3);

    // 403 for a tool needing mcp:admin, then success with a token that has it.
    const client = await registerPublicClient(as);
    const plain = (await authorize(as, client, { resource: bed.mcpUrl, scope: "mcp:tools" })).tokens
      .access_token;
    const sid = await mcpSession(bed.mcpUrl, plain);
    const call = { id: 3, method: "tools/call", params: { name: "admin_echo", arguments: { text: "x" } } };
    const denied = await rpc(bed.mcpUrl, plain, call, sid);
    assert.equal(denied.res.status, 403);
    const d = challengeParams(denied.res.headers.get("www-authenticate"));
    assert.equal(d.error, "insufficient_scope");
    assert.equal(d.scope, "mcp:tools mcp:admin");
    assert.equal(bed.mcp.counters.forbidden, 1);

    // A flow that never names the resource gets an opaque token the MCP server cannot use.
    const opaque = (await authorize(as, client, { scope: "mcp:tools" })).tokens.access_token;
    assert.throws(() => decodeJwt(opaque));
    assert.equal((await rpc(bed.mcpUrl, opaque, init)).res.status, 401);

    const admin = (await authorize(as, client, { resource: bed.mcpUrl, scope: "mcp:tools mcp:admin" })).tokens
      .access_token;
    const sid2 = await mcpSession(bed.mcpUrl, admin);
    const ok = await rpc(bed.mcpUrl, admin, call, sid2);
    assert.equal(ok.res.status, 200);
    assert.equal(firstText(ok.messages[0]?.result), "admin: x");
  });

  test("token endpoint failure knobs", async () => {
    const cc = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
    });
    const auth = oauth.ClientSecretBasic(cc.client_secret as string);
    const ccRequest = (signal?: AbortSignal) =>
      oauth.clientCredentialsGrantRequest(as, cc, auth, { resource: bed.mcpUrl }, { ...insecure, signal });
    bed.as.resetCounters();

    bed.as.failTokenEndpoint(1, "503", { retryAfterSeconds: 7 });
    let res = await ccRequest();
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "7");
    await res.body?.cancel();

    bed.as.failTokenEndpoint(1, "429", { retryAfterSeconds: 3 });
    res = await ccRequest();
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "3");
    await res.body?.cancel();

    bed.as.failTokenEndpoint(1, "drop");
    await assert.rejects(ccRequest(), TypeError, "fetch fails on a dropped connection");

    bed.as.failTokenEndpoint(1, "html");
    res = await ccRequest();
    assert.equal(res.status, 502);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(await res.text(), /502 Bad Gateway/);

    bed.as.failTokenEndpoint(1, "malformed");
    res = await ccRequest();
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.throws(() => JSON.parse(body), SyntaxError);

    bed.as.failTokenEndpoint(1, "slow", { delayMs: 300 });
    const t0 = Date.now();
    res = await ccRequest();
    assert.ok(Date.now() - t0 >= 280, "delayed");
    assert.equal(res.status, 200, "then answered normally");
    await res.body?.cancel();

    bed.as.failTokenEndpoint(1, "slow", { delayMs: Number.POSITIVE_INFINITY });
    await assert.rejects(
      ccRequest(AbortSignal.timeout(200)),
      /abort|timeout/i,
      "hangs past a client timeout",
    );

    assert.equal(bed.as.counters.tokenRequests, 7);
    assert.equal(bed.as.counters.injectedFailures, 7);
    assert.equal(bed.as.counters.grants.client_credentials, 1, "only the slow one reached oidc-provider");

    // Grant-type filter: a client-credentials request passes untouched, the refresh fails.
    const client = await registerPublicClient(as);
    const { tokens } = await authorize(as, client, { resource: bed.mcpUrl });
    bed.as.failTokenEndpoint(1, "503", { grantType: "refresh_token" });
    res = await ccRequest();
    assert.equal(res.status, 200, "other grant types pass and do not use up the fault");
    await res.body?.cancel();
    assert.equal(bed.as.pendingTokenEndpointFailures, 1);
    res = await refresh(as, client, tokens.refresh_token as string);
    assert.equal(res.status, 503);
    await res.body?.cancel();

    // afterProcessing: the AS rotated the token, but the client never saw the answer, so its
    // copy of the refresh token is now a reused one.
    bed.as.resetCounters();
    bed.as.failTokenEndpoint(1, "drop", { grantType: "refresh_token", afterProcessing: true });
    await assert.rejects(refresh(as, client, tokens.refresh_token as string), TypeError);
    assert.equal(bed.as.counters.refreshGrantsSucceeded, 1);
    assert.deepEqual(await oauthError(await refresh(as, client, tokens.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });
    assert.equal(bed.as.counters.refreshTokenReuse, 1);
  });

  test("clock offset skews the Date header and JWT iat/exp", async () => {
    const cc = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
    });
    bed.as.setClockOffset(3_600_000);
    try {
      const res = await oauth.clientCredentialsGrantRequest(
        as,
        cc,
        oauth.ClientSecretBasic(cc.client_secret as string),
        { resource: bed.mcpUrl },
        insecure,
      );
      const skew = Date.parse(res.headers.get("date") ?? "") - Date.now();
      assert.ok(Math.abs(skew - 3_600_000) < 3_000, `Date header skew ${skew}`);
      const token = ((await res.json()) as { access_token: string }).access_token;
      const { iat, exp } = decodeJwt(token);
      assert.ok(Math.abs((iat as number) - Date.now() / 1000 - 3600) < 3);
      assert.equal((exp as number) - (iat as number), 3600);
    } finally {
      bed.as.setClockOffset(0);
    }
  });

  test("device authorization grant with approveDeviceCode / denyDeviceCode", async () => {
    const client = await bed.as.registerClient({
      grant_types: ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
      token_endpoint_auth_method: "none",
      redirect_uris: [],
      response_types: [],
    });
    const start = async () => {
      const res = await oauth.deviceAuthorizationRequest(
        as,
        client,
        oauth.None(),
        { scope: "mcp:tools", resource: bed.mcpUrl },
        insecure,
      );
      return oauth.processDeviceAuthorizationResponse(as, client, res);
    };
    const poll = (deviceCode: string) =>
      oauth.deviceCodeGrantRequest(as, client, oauth.None(), deviceCode, {
        ...insecure,
        additionalParameters: { resource: bed.mcpUrl },
      });

    const da = await start();
    assert.equal(da.interval, 1);
    assert.equal(da.verification_uri, bed.as.endpoints.verification);
    assert.deepEqual(await oauthError(await poll(da.device_code)), {
      status: 400,
      error: "authorization_pending",
    });
    await bed.as.approveDeviceCode(da.user_code);
    const tokens = await oauth.processDeviceCodeResponse(as, client, await poll(da.device_code));
    assert.equal(decodeJwt(tokens.access_token).aud, bed.mcpUrl);
    assert.ok(tokens.refresh_token);
    assert.ok(bed.as.counters.grantsSucceeded.device_code >= 1);

    const denied = await start();
    await bed.as.denyDeviceCode(denied.user_code);
    assert.deepEqual(await oauthError(await poll(denied.device_code)), {
      status: 400,
      error: "access_denied",
    });
  });

  test("client credentials with a pre-registered confidential client", async () => {
    const cc = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      scope: "mcp:tools",
    });
    assert.ok(cc.client_secret);
    const res = await oauth.clientCredentialsGrantRequest(
      as,
      cc,
      oauth.ClientSecretBasic(cc.client_secret as string),
      { resource: bed.mcpUrl, scope: "mcp:tools" },
      insecure,
    );
    const tokens = await oauth.processClientCredentialsResponse(as, cc, res);
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.aud, bed.mcpUrl);
    assert.equal(claims.sub, cc.client_id);
    assert.equal(claims.scope, "mcp:tools");
    assert.equal(tokens.refresh_token, undefined);
    const sessionId = await mcpSession(bed.mcpUrl, tokens.access_token);
    assert.equal((await callEcho(bed.mcpUrl, tokens.access_token, sessionId, "cc")).res.status, 200);
  });

  test("revocation (RFC 7009), revokeAllGrants, expireRefreshTokens", async () => {
    const client = await registerPublicClient(as);
    bed.as.resetCounters();
    const a = (await authorize(as, client, { resource: bed.mcpUrl })).tokens;
    const res = await oauth.revocationRequest(as, client, oauth.None(), a.refresh_token as string, insecure);
    await oauth.processRevocationResponse(res);
    assert.equal(bed.as.counters.revocations, 1);
    assert.deepEqual(await oauthError(await refresh(as, client, a.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });

    // A JWT access token cannot be revoked (RFC 7009 §2.2.1 unsupported_token_type).
    const atRes = await oauth.revocationRequest(as, client, oauth.None(), a.access_token, insecure);
    assert.deepEqual(await oauthError(atRes), { status: 400, error: "unsupported_token_type" });

    const b = (await authorize(as, client, { resource: bed.mcpUrl })).tokens;
    assert.ok((await bed.as.revokeAllGrants()) >= 1);
    assert.deepEqual(await oauthError(await refresh(as, client, b.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });

    const c = (await authorize(as, client, { resource: bed.mcpUrl })).tokens;
    assert.ok(bed.as.expireRefreshTokens() >= 1);
    assert.deepEqual(await oauthError(await refresh(as, client, c.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });
    assert.equal(bed.as.counters.rejectedRefreshReasons.at(-1), "refresh token is expired");
  });

  test("SDK client over Streamable HTTP: progress notifications and a relayed elicitation", async () => {
    const client = await registerPublicClient(as);
    const token = (await authorize(as, client, { resource: bed.mcpUrl, scope: "mcp:tools" })).tokens
      .access_token;
    const mcp = await sdkClient(bed, token);
    try {
      const progress: number[] = [];
      const slow = await mcp.callTool({ name: "slow", arguments: { steps: 3, delayMs: 10 } }, undefined, {
        onprogress: (p) => progress.push(p.progress),
      });
      assert.equal(firstText(slow), "done after 3 steps");
      assert.deepEqual(progress, [1, 2, 3]);

      const asked = await mcp.callTool({ name: "ask_client", arguments: { question: "favourite number?" } });
      assert.deepEqual(JSON.parse(firstText(asked)), {
        action: "accept",
        content: { answer: "you asked: favourite number?" },
      });

      const big = await mcp.callTool({ name: "big", arguments: { bytes: 100 * 1024 } });
      assert.equal(firstText(big).length, 100 * 1024);
    } finally {
      await mcp.close();
    }
  });

  test("SDK client over the legacy SSE transport", async () => {
    const client = await registerPublicClient(as);
    const token = (await authorize(as, client, { resource: bed.mcpUrl })).tokens.access_token;
    const mcp = await sdkClient(bed, token, "sse");
    try {
      assert.equal(firstText(await mcp.callTool({ name: "add", arguments: { a: 2, b: 3 } })), "5");
    } finally {
      await mcp.close();
    }
    const noToken = await fetch(bed.mcp.sseUrl);
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
  });

  test("MCP server stop/restart on the same port: old sessions are gone (404)", async () => {
    const client = await registerPublicClient(as);
    const token = (await authorize(as, client, { resource: bed.mcpUrl })).tokens.access_token;
    const sid = await mcpSession(bed.mcpUrl, token);
    await bed.mcp.stop();
    await assert.rejects(fetch(bed.mcpUrl), TypeError);
    await bed.mcp.restart();
    const stale = await callEcho(bed.mcpUrl, token, sid, "x");
    assert.equal(stale.res.status, 404);
    const fresh = await mcpSession(bed.mcpUrl, token);
    assert.equal((await callEcho(bed.mcpUrl, token, fresh, "back")).res.status, 200);
  });
});

describe("test bed with short lifetimes", () => {
  let bed: TestBed;
  let as: oauth.AuthorizationServer;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 1, refreshTokenTtl: 3 });
    as = await discover(bed.issuer);
  });
  after(async () => {
    await bed.close();
  });

  test("expired access token → 401 invalid_token; refresh token lifetime is absolute across rotation", async () => {
    const client = await registerPublicClient(as);
    const { tokens } = await authorize(as, client, { resource: bed.mcpUrl });
    const issuedAt = Date.now();
    assert.equal(tokens.expires_in, 1);
    // (No MCP call with the fresh token: with a 1 s lifetime and whole-second exp it may
    // already be expired a few ms after issue. Waiting past it is deterministic.)
    await new Promise((r) => setTimeout(r, 1_100));
    const expired = await rpc(bed.mcpUrl, tokens.access_token, {
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "0" } },
    });
    assert.equal(expired.res.status, 401);
    const c = challengeParams(expired.res.headers.get("www-authenticate"));
    assert.equal(c.error, "invalid_token");
    assert.match(c.error_description ?? "", /expired/);
    assert.equal(c.resource_metadata, bed.mcp.resourceMetadataUrl);

    // Refresh works and rotation hands out a new token, which still dies 3 s after the first.
    const rotated = await oauth.processRefreshTokenResponse(
      as,
      client,
      await refresh(as, client, tokens.refresh_token as string),
    );
    assert.ok(rotated.refresh_token && rotated.refresh_token !== tokens.refresh_token);
    assert.ok((decodeJwt(rotated.access_token).exp as number) > Date.now() / 1000);
    await new Promise((r) => setTimeout(r, Math.max(0, issuedAt + 3_100 - Date.now())));
    assert.deepEqual(await oauthError(await refresh(as, client, rotated.refresh_token as string)), {
      status: 400,
      error: "invalid_grant",
    });
    assert.equal(bed.as.counters.rejectedRefreshReasons.at(-1), "refresh token is expired");
  });
});
