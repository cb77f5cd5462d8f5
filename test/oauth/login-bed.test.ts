/**
 * Login against the repository's test bed: a real oidc-provider authorization server and a real
 * MCP SDK server. Every flow ends with a token the MCP server accepts.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { TokenkeeperError } from "../../src/core/errors.js";
import { peekJwtClaims } from "../../src/core/jwt.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import { type LoginDeps, type LoginRequest, login } from "../../src/manager/login.js";
import type { DevicePrompt } from "../../src/oauth/device-login.js";
import { clientCredentialsGrant, refreshGrant } from "../../src/oauth/token-endpoint.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { followAuthorization, type Tamper } from "../support/browser-agent.js";
import { mcpAccepts } from "../support/mcp-accepts.js";

let bed: TestBed;
let store: MemoryStore;

before(async () => {
  bed = await startTestBed();
});
after(async () => {
  await bed.close();
});
beforeEach(() => {
  store = new MemoryStore();
  bed.as.resetCounters();
  bed.as.setConsent("auto");
});

function deps(overrides: Partial<LoginDeps> & { tamper?: Tamper } = {}): LoginDeps {
  const { tamper, ...rest } = overrides;
  return {
    store,
    clock: systemClock,
    presentUrl: async (url) => {
      await followAuthorization(url, { tamper });
    },
    presentDeviceCode: (prompt: DevicePrompt) => {
      // The person approves on another device a moment later.
      setTimeout(() => void bed.as.approveDeviceCode(prompt.userCode).catch(() => {}), 50);
    },
    ...rest,
  };
}

function request(overrides: Partial<LoginRequest> = {}): LoginRequest {
  return { mcpUrl: bed.mcpUrl, name: "bed", flow: "browser", ...overrides };
}

async function rejectsWith(promise: Promise<unknown>, code: string, problem: string) {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof TokenkeeperError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.fields.problem, problem, e.message);
    return true;
  });
}

describe("login against the oidc-provider test bed", () => {
  it("browser flow with dynamic registration: PKCE, resource, iss; the MCP server accepts the token", async () => {
    const result = await login(request(), deps());
    const { record, summary } = result;
    assert.equal(bed.as.counters.registrations, 1);
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 1);
    assert.equal(record.grant, "authorization_code");
    assert.equal(record.client.kind, "dynamic");
    assert.equal(record.server.resource, bed.mcpUrl);
    assert.equal(record.server.issuer, bed.issuer);
    assert.equal(record.scope, "mcp:tools offline_access");
    assert.equal(
      peekJwtClaims(record.tokens!.accessToken.reveal())?.aud,
      bed.mcpUrl,
      "audience-restricted to the MCP server (RFC 8707)",
    );
    assert.ok(record.tokens!.refreshToken);
    assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
    // Stored, and refreshable with nothing but the record (no discovery needed).
    const stored = await store.get("bed");
    assert.equal(stored?.version, 1);
    const refreshed = await refreshGrant(stored!.record, { clock: systemClock });
    assert.ok(refreshed.rotated);
    assert.equal(summary.refreshTokenIssued, true);
    assert.equal(summary.clientKind, "dynamic");
    assert.deepEqual(summary.warnings, []);
  });

  it("device flow with test-side approval", async () => {
    let shown: DevicePrompt | undefined;
    const result = await login(
      request({ flow: "device", name: "headless" }),
      deps({
        presentDeviceCode: (p) => {
          shown = p;
          setTimeout(() => void bed.as.approveDeviceCode(p.userCode), 50);
        },
      }),
    );
    assert.ok(shown?.userCode);
    assert.match(shown!.verificationUri, /\/device$/);
    assert.equal(result.record.grant, "device_code");
    assert.equal(bed.as.counters.grantsSucceeded.device_code, 1);
    assert.ok(result.record.tokens!.refreshToken);
    assert.ok(await mcpAccepts(bed.mcpUrl, result.record.tokens!.accessToken.reveal()));
  });

  it("device flow denied on the verification page stores nothing", async () => {
    await rejectsWith(
      login(
        request({ flow: "device", name: "denied" }),
        deps({ presentDeviceCode: (p) => void setTimeout(() => void bed.as.denyDeviceCode(p.userCode), 50) }),
      ),
      "login_failed",
      "access_denied",
    );
    assert.deepEqual(await store.list(), []);
  });

  it("pre-registered public client: no registration request", async () => {
    const client = await bed.as.registerClient({
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: ["http://127.0.0.1/callback"],
    });
    const { record } = await login(request({ clientId: client.client_id, name: "pre" }), deps());
    assert.equal(bed.as.counters.registrations, 0);
    assert.equal(record.client.kind, "preregistered");
    assert.equal(record.client.clientId, client.client_id);
    assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
  });

  it("pre-registered confidential client authenticates with its secret", async () => {
    const client = await bed.as.registerClient({
      application_type: "native",
      token_endpoint_auth_method: "client_secret_basic",
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: ["http://127.0.0.1/callback"],
    });
    const { record } = await login(
      request({ clientId: client.client_id, clientSecret: new Secret(client.client_secret!), name: "conf" }),
      deps(),
    );
    assert.equal(record.client.tokenEndpointAuthMethod, "client_secret_basic");
    assert.equal(record.client.clientSecret?.reveal(), client.client_secret);
    assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
    // A wrong secret is refused at the code exchange, and nothing is stored.
    await rejectsWith(
      login(
        request({ clientId: client.client_id, clientSecret: new Secret("wrong"), name: "conf2" }),
        deps(),
      ),
      "login_failed",
      "code_exchange_failed",
    );
    assert.equal(await store.get("conf2"), null);
  });

  it("client credentials: no human, no refresh token, renewable from the record alone", async () => {
    const client = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    });
    const { record, summary } = await login(
      request({
        flow: "client_credentials",
        clientId: client.client_id,
        clientSecret: new Secret(client.client_secret!),
        name: "m2m",
      }),
      deps({ presentUrl: () => assert.fail("no browser for client credentials") }),
    );
    assert.equal(record.grant, "client_credentials");
    assert.equal(record.scope, "mcp:tools", "no offline_access for a grant without refresh tokens");
    assert.equal(record.tokens!.refreshToken, undefined);
    assert.equal(summary.humanNeededAt, null);
    assert.deepEqual(summary.warnings, []);
    assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
    const again = await clientCredentialsGrant(record, { clock: systemClock });
    assert.ok(again.tokens.accessToken);
    assert.equal(bed.as.counters.grantsSucceeded.client_credentials, 2);
  });

  it("client credentials with private_key_jwt: a signed assertion, the key read from its file", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const dir = mkdtempSync(join(tmpdir(), "tk-key-"));
    const keyFile = join(dir, "client.pem");
    writeFileSync(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    try {
      const client = await bed.as.registerClient({
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: "private_key_jwt",
        jwks: { keys: [{ ...publicKey.export({ format: "jwk" }), use: "sig", alg: "ES256" }] },
      });
      const { record } = await login(
        request({
          flow: "client_credentials",
          clientId: client.client_id,
          privateKeyFile: keyFile,
          name: "jwt",
        }),
        deps({ presentUrl: () => assert.fail("no browser for client credentials") }),
      );
      assert.equal(record.client.tokenEndpointAuthMethod, "private_key_jwt");
      assert.equal(record.client.privateKeyFile, keyFile);
      assert.equal(record.client.clientSecret, undefined);
      // The store holds the path, never the key.
      const saved = JSON.stringify((await store.get("jwt"))!.record.client);
      assert.ok(!saved.includes("PRIVATE KEY"));
      assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
      // Renewal needs nothing but the record and the key file.
      const again = await clientCredentialsGrant(record, { clock: systemClock });
      assert.ok(await mcpAccepts(bed.mcpUrl, again.tokens.accessToken.reveal()));
      assert.equal(bed.as.counters.grantsSucceeded.client_credentials, 2);

      // Another key in the file: the server refuses the assertion, and says so.
      writeFileSync(
        keyFile,
        generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
          type: "pkcs8",
          format: "pem",
        }),
      );
      await assert.rejects(clientCredentialsGrant(record, { clock: systemClock }), (e: unknown) => {
        assert.ok(e instanceof TokenkeeperError, String(e));
        assert.equal(e.fields.serverError, "invalid_client", e.message);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("client credentials with a dynamically registered confidential client", async () => {
    const { record } = await login(request({ flow: "client_credentials", name: "m2m-dyn" }), deps());
    assert.equal(bed.as.counters.registrations, 1);
    assert.equal(record.client.kind, "dynamic");
    assert.ok(record.client.clientSecret);
    assert.ok(await mcpAccepts(bed.mcpUrl, record.tokens!.accessToken.reveal()));
  });

  it("re-login replaces tokens, clears the reauth state and keeps settings", async () => {
    const first = await login(request(), deps());
    const degraded: ConnectorRecord = {
      ...first.record,
      settings: { refreshAheadMs: 120_000, notifyWebhook: "https://hooks.example/tk" },
      state: {
        ...first.record.state,
        health: "reauth_required",
        refreshCount: 7,
        reauth: { reason: "invalid_grant", since: 1, action: "login" },
      },
    };
    await store.put("bed", degraded, first.version);
    const second = await login(request(), deps());
    assert.equal(second.version, 3);
    assert.equal(second.record.state.health, "ok");
    assert.equal(second.record.state.reauth, undefined);
    assert.equal(second.record.state.refreshCount, 7);
    assert.deepEqual(second.record.settings, degraded.settings);
    assert.equal(second.record.createdAt, first.record.createdAt);
    assert.ok(!second.record.tokens!.accessToken.equals(first.record.tokens!.accessToken));
    assert.equal(second.summary.replacedExisting, true);
  });

  it("refuses to reuse a name that belongs to another server", async () => {
    await login(request(), deps());
    await assert.rejects(
      login(request({ mcpUrl: `${bed.mcpUrl}/other` }), deps()),
      (e: TokenkeeperError) => e.code === "invalid_config" && /already exists/.test(e.message),
    );
  });
});

describe("hostile or failed callbacks store nothing", () => {
  it("a callback with the wrong state is ignored: the login waits on and stores nothing", async () => {
    await rejectsWith(
      login(request({ timeoutMs: 1500 }), deps({ tamper: "state" })),
      "login_failed",
      "callback_timeout",
    );
    assert.equal(bed.as.counters.grants.authorization_code, 0, "the code was never exchanged");
    assert.deepEqual(await store.list(), []);
  });

  it("a forged callback from another local process cannot abort a login in progress", async () => {
    const forged: number[] = [];
    const result = await login(
      request(),
      deps({
        presentUrl: async (url) => {
          const redirect = new URL(new URL(url).searchParams.get("redirect_uri")!);
          // Before the person finishes: a wrong state, no state, and an error with a guessed state.
          for (const query of ["code=forged&state=guess", "code=forged", "error=access_denied&state=x"]) {
            forged.push((await fetch(`${redirect.href}?${query}`)).status);
          }
          await followAuthorization(url);
        },
      }),
    );
    assert.deepEqual(forged, [400, 400, 400], "each forged request got an error page");
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 1);
    assert.ok(await mcpAccepts(bed.mcpUrl, result.record.tokens!.accessToken.reveal()));
    assert.equal((await store.get("bed"))?.version, 1);
  });

  for (const [tamper, problem] of [
    ["iss", "iss_mismatch"],
    ["drop-iss", "iss_missing"],
  ] as const) {
    it(`a callback with ${tamper === "drop-iss" ? "no iss (advertised by the server)" : `the wrong ${tamper}`} is refused before any code exchange`, async () => {
      await rejectsWith(login(request(), deps({ tamper })), "login_failed", problem);
      assert.equal(bed.as.counters.grants.authorization_code, 0, "the code was never exchanged");
      assert.deepEqual(await store.list(), []);
    });
  }

  it("access denied by the user", async () => {
    bed.as.setConsent("deny");
    await rejectsWith(login(request(), deps()), "login_failed", "access_denied");
    assert.deepEqual(await store.list(), []);
  });

  it("no callback before the timeout", async () => {
    await rejectsWith(
      login(request({ timeoutMs: 200 }), deps({ presentUrl: () => {} })),
      "login_failed",
      "callback_timeout",
    );
    assert.deepEqual(await store.list(), []);
  });
});

describe("pre-registered clients with a fixed callback port", () => {
  it("remembers the port given with --callback-port for the next login", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const client = await bed.as.registerClient({
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: [`http://127.0.0.1:${port}/callback`],
    });
    const seen: string[] = [];
    const present = async (url: string) => {
      seen.push(new URL(url).searchParams.get("redirect_uri") ?? "");
      await followAuthorization(url);
    };
    const first = await login(
      request({ clientId: client.client_id, callbackPort: port, name: "fixed" }),
      deps({ presentUrl: present }),
    );
    assert.deepEqual(first.record.client.redirectUris, [`http://127.0.0.1:${port}/callback`]);
    await login(request({ name: "fixed" }), deps({ presentUrl: present }));
    assert.deepEqual(seen, [`http://127.0.0.1:${port}/callback`, `http://127.0.0.1:${port}/callback`]);
    assert.equal(bed.as.counters.registrations, 0);
  });
});
