/**
 * Hostile or broken servers: each case gets its own clear error, registers no client, and
 * stores nothing. Secrets never appear in the error.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { inspect } from "node:util";
import { systemClock } from "../../src/core/clock.js";
import { TokenkeeperError } from "../../src/core/errors.js";
import { type LoginDeps, login } from "../../src/manager/login.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { followAuthorization } from "../support/browser-agent.js";
import { type FakeOAuth, type FakeOAuthOptions, startFakeOAuth } from "./stub-servers.js";

const fakes: FakeOAuth[] = [];
after(() => Promise.all(fakes.map((f) => f.close())));

async function attempt(
  options: FakeOAuthOptions,
  flow: "browser" | "device" | "client_credentials" = "browser",
  timeoutMs?: number,
) {
  const fake = await startFakeOAuth(options);
  fakes.push(fake);
  const store = new MemoryStore();
  let presented = false;
  const deps: LoginDeps = {
    store,
    clock: systemClock,
    presentUrl: async (url) => {
      presented = true;
      await followAuthorization(url);
    },
    presentDeviceCode: () => {},
  };
  const outcome = await login(
    { mcpUrl: fake.mcpUrl, name: "hostile", flow, ...(timeoutMs ? { timeoutMs } : {}) },
    deps,
  ).then(
    (r) => ({ ok: true as const, r }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  return { fake, store, outcome, presented: () => presented };
}

async function expectRefusal(
  options: FakeOAuthOptions,
  code: string,
  problem: string | undefined,
  message: RegExp,
) {
  const { fake, store, outcome } = await attempt(options);
  assert.equal(outcome.ok, false, "login must fail");
  const e = (outcome as { e: unknown }).e;
  assert.ok(e instanceof TokenkeeperError, String(e));
  assert.equal(e.code, code, e.message);
  if (problem) assert.equal(e.fields.problem, problem, e.message);
  assert.match(e.message, message);
  assert.deepEqual(await store.list(), [], "nothing stored");
  assert.equal(fake.counts.registrations, 0, "no client registered");
  assert.equal(fake.counts.tokenRequests, 0, "no token requested");
  return { fake, e };
}

describe("hostile metadata", () => {
  it("the default fake server is a valid login target (control)", async () => {
    const { outcome, fake, store } = await attempt({});
    assert.ok(outcome.ok, outcome.ok ? "" : String((outcome as { e: unknown }).e));
    assert.deepEqual(await store.list(), ["hostile"]);
    const auth = fake.lastAuthorization!;
    assert.equal(auth.get("code_challenge_method"), "S256");
    assert.match(auth.get("code_challenge") ?? "", /^[\w-]{43}$/);
    assert.equal(auth.get("resource"), fake.mcpUrl);
    assert.equal(auth.get("scope"), "tools offline_access");
    assert.ok((auth.get("state") ?? "").length >= 32);
    assert.equal(
      fake.lastTokenRequest?.get("resource"),
      fake.mcpUrl,
      "resource on the token request too (RFC 8707 §2.2)",
    );
    assert.ok(fake.lastTokenRequest?.get("code_verifier"));
  });

  it("issuer mismatch", async () => {
    await expectRefusal(
      { metadata: (m) => ({ ...m, issuer: "https://evil.example" }) },
      "protocol_error",
      "issuer_mismatch",
      /states issuer https:\/\/evil\.example/,
    );
  });

  it("an http: authorization server", async () => {
    await expectRefusal(
      { prm: (d) => ({ ...d, authorization_servers: ["http://auth.example.test"] }) },
      "insecure_endpoint",
      undefined,
      /authorization server http:\/\/auth\.example\.test\/ is not HTTPS/,
    );
  });

  it("an http: token endpoint in otherwise valid metadata", async () => {
    await expectRefusal(
      { metadata: (m) => ({ ...m, token_endpoint: "http://auth.example.test/token" }) },
      "insecure_endpoint",
      undefined,
      /token_endpoint/,
    );
  });

  it("missing S256 (MCP: the client must refuse)", async () => {
    const { fake } = await expectRefusal(
      { metadata: (m) => ({ ...m, code_challenge_methods_supported: ["plain"] }) },
      "login_failed",
      "pkce_s256_missing",
      /does not advertise PKCE S256/,
    );
    assert.equal(fake.counts.authorizations, 0);
    await expectRefusal(
      { metadata: ({ code_challenge_methods_supported: _, ...m }) => m },
      "login_failed",
      "pkce_s256_missing",
      /absent/,
    );
  });

  it("protected resource metadata naming another resource", async () => {
    await expectRefusal(
      { prm: (d) => ({ ...d, resource: "https://elsewhere.example/mcp" }) },
      "protocol_error",
      "resource_mismatch",
      /another resource/,
    );
  });

  it("metadata with a wrongly typed field names the field and the server", async () => {
    await expectRefusal(
      { metadata: (m) => ({ ...m, token_endpoint: 42 }) },
      "protocol_error",
      "invalid_metadata",
      /field "token_endpoint"/,
    );
  });
});

describe("hostile authorization responses", () => {
  it("a callback with a forged state is ignored: the login waits for its own and times out", async () => {
    const { outcome, store, fake } = await attempt(
      { callback: (p) => p.set("state", "forged") },
      "browser",
      1500,
    );
    assert.ok(!outcome.ok);
    assert.equal((outcome as { e: TokenkeeperError }).e.fields.problem, "callback_timeout");
    assert.equal((outcome as { e: TokenkeeperError }).e.fields.ignoredRequests, 1);
    assert.equal(fake.counts.tokenRequests, 0);
    assert.deepEqual(await store.list(), []);
  });

  it("a callback from another issuer (mix-up, RFC 9207)", async () => {
    const { outcome, store, fake } = await attempt({
      callback: (p) => p.set("iss", "https://other-as.example"),
    });
    assert.ok(!outcome.ok);
    assert.equal((outcome as { e: TokenkeeperError }).e.fields.problem, "iss_mismatch");
    assert.equal(fake.counts.tokenRequests, 0);
    assert.deepEqual(await store.list(), []);
  });

  it("a token response that is not a token response", async () => {
    const { outcome, store } = await attempt({ token: () => ({ json: { token_type: "Bearer" } }) });
    assert.ok(!outcome.ok);
    assert.deepEqual(await store.list(), []);
  });

  it("errors never carry the code, verifier or tokens", async () => {
    const { outcome } = await attempt({
      token: () => ({ status: 400, json: { error: "invalid_grant", error_description: "code abc is bad" } }),
    });
    assert.ok(!outcome.ok);
    const e = (outcome as { e: TokenkeeperError }).e;
    assert.equal(e.fields.problem, "code_exchange_failed");
    const text = `${e.message} ${JSON.stringify(e.toJSON())} ${inspect(e.fields)}`;
    assert.doesNotMatch(text, /code_verifier=|access_token|refresh_token/);
  });
});

describe("servers older or looser than the 2025-11-25 specification", () => {
  it("a 2025-03-26 server with no metadata at all: DCR, PKCE and the code at /register, /authorize, /token", async () => {
    const { fake, outcome, store } = await attempt({ prmAt: "none", metadataAt: "none" });
    assert.ok(outcome.ok, outcome.ok ? "" : String((outcome as { e: unknown }).e));
    assert.equal(fake.counts.registrations, 1);
    assert.equal(fake.counts.authorizations, 1);
    assert.equal(fake.lastAuthorization?.get("code_challenge_method"), "S256");
    assert.equal(fake.lastTokenRequest?.get("grant_type"), "authorization_code");
    const saved = (await store.get("hostile"))!.record;
    assert.equal(saved.server.issuer, fake.origin);
    assert.equal(saved.server.metadata.token_endpoint, `${fake.origin}/token`);
    assert.equal(saved.server.resourceMetadataUrl, undefined, "no protected-resource metadata to remember");
    assert.ok(saved.tokens?.refreshToken, "refreshable unattended like any other connector");
  });

  it("a server that lets initialize through: login from its well-known metadata, scopes_supported requested", async () => {
    const { fake, outcome } = await attempt({
      mcp: (req) => (req.method === "POST" ? { json: { jsonrpc: "2.0", id: 0, result: {} } } : undefined),
    });
    assert.ok(outcome.ok, outcome.ok ? "" : String((outcome as { e: unknown }).e));
    assert.equal(fake.counts.tokenRequests, 1);
    // No challenge to take a scope from: the protected resource's scopes_supported (MCP "Scope Selection Strategy").
    assert.deepEqual(fake.lastAuthorization?.get("scope")?.split(" ").sort(), [
      "admin",
      "offline_access",
      "tools",
    ]);
  });
});
