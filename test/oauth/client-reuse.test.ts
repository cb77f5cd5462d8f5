/**
 * Logging in again reuses the connector's client registration instead of registering a new
 * client every time, falls back to registering when the server purged it (invalid_client), and
 * the redirect URI can be shaped (host, path) to match a client registered for mcp-remote.
 * Against the real oidc-provider test bed; every login ends with a token the MCP server accepts.
 */
import assert from "node:assert/strict";
import { type AddressInfo, createServer } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { type LoginDeps, type LoginRequest, login } from "../../src/manager/login.js";
import type { DevicePrompt } from "../../src/oauth/device-login.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { followAuthorization } from "../support/browser-agent.js";
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
});

function deps(notes: string[] = [], redirects: string[] = []): LoginDeps {
  return {
    store,
    clock: systemClock,
    note: (line) => notes.push(line),
    presentUrl: async (url) => {
      redirects.push(new URL(url).searchParams.get("redirect_uri") ?? "");
      const result = await followAuthorization(url);
      assert.ok(result.reachedCallback, `the browser reached the callback (${result.hops.join(" → ")})`);
    },
    presentDeviceCode: (prompt: DevicePrompt) => {
      setTimeout(() => void bed.as.approveDeviceCode(prompt.userCode).catch(() => {}), 50);
    },
  };
}

function request(overrides: Partial<LoginRequest> = {}): LoginRequest {
  return { mcpUrl: bed.mcpUrl, name: "bed", ...overrides };
}

function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const p = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
}

describe("re-login reuses the client registration", () => {
  it("browser flow: three logins, one registration, every token accepted", async () => {
    const notes: string[] = [];
    const first = await login(request(), deps(notes));
    const second = await login(request(), deps(notes));
    const third = await login(request(), deps(notes));
    assert.equal(bed.as.counters.registrations, 1);
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 3);
    assert.equal(second.record.client.clientId, first.record.client.clientId);
    assert.equal(third.record.client.clientId, first.record.client.clientId);
    assert.equal(notes.filter((n) => n.startsWith("Reusing the registered client")).length, 2);
    assert.ok(await mcpAccepts(bed.mcpUrl, third.record.tokens!.accessToken.reveal()));
  });

  it("device flow: a second login keeps the client", async () => {
    const first = await login(request({ flow: "device", name: "dev" }), deps());
    const second = await login(request({ name: "dev" }), deps());
    assert.equal(second.record.grant, "device_code");
    assert.equal(second.record.client.clientId, first.record.client.clientId);
    assert.equal(bed.as.counters.registrations, 1);
    assert.equal(bed.as.counters.grantsSucceeded.device_code, 2);
  });

  it("client credentials: the confidential client and its secret are kept", async () => {
    const first = await login(request({ flow: "client_credentials", name: "m2m" }), deps());
    const second = await login(request({ name: "m2m" }), deps());
    assert.equal(second.record.client.clientId, first.record.client.clientId);
    assert.equal(bed.as.counters.registrations, 1);
    assert.ok(await mcpAccepts(bed.mcpUrl, second.record.tokens!.accessToken.reveal()));
  });

  it("a client the server purged (invalid_client) is replaced by a new registration", async () => {
    const notes: string[] = [];
    const first = await login(request({ name: "purged" }), deps(notes));
    assert.ok(bed.as.forgetClient(first.record.client.clientId));
    const second = await login(request({ name: "purged" }), deps(notes));
    assert.notEqual(second.record.client.clientId, first.record.client.clientId);
    assert.equal(bed.as.counters.registrations, 2);
    assert.ok(notes.some((n) => n.includes("no longer knows client")));
    assert.ok(await mcpAccepts(bed.mcpUrl, second.record.tokens!.accessToken.reveal()));
  });

  it("a different callback path than the registration's registers anew", async () => {
    await login(request({ name: "moved" }), deps());
    const redirects: string[] = [];
    const second = await login(
      request({ name: "moved", callbackPath: "/oauth/callback" }),
      deps([], redirects),
    );
    assert.equal(bed.as.counters.registrations, 2);
    assert.match(redirects[0]!, /^http:\/\/127\.0\.0\.1:\d+\/oauth\/callback$/);
    assert.ok(await mcpAccepts(bed.mcpUrl, second.record.tokens!.accessToken.reveal()));
  });
});

describe("callback port", () => {
  it("a different --callback-port than the registration's registers anew, on that port", async () => {
    await login(request({ name: "ported" }), deps());
    const port = await freePort();
    const redirects: string[] = [];
    const second = await login(request({ name: "ported", callbackPort: port }), deps([], redirects));
    assert.equal(bed.as.counters.registrations, 2);
    assert.equal(redirects[0], `http://127.0.0.1:${port}/callback`);
    assert.ok(await mcpAccepts(bed.mcpUrl, second.record.tokens!.accessToken.reveal()));
  });
});

describe("callback host and path", () => {
  it("matches a client pre-registered for mcp-remote (http://localhost:PORT/oauth/callback), listening on 127.0.0.1", async () => {
    const port = await freePort();
    const redirectUri = `http://localhost:${port}/oauth/callback`;
    const client = await bed.as.registerClient({
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: [redirectUri],
    });
    const redirects: string[] = [];
    const first = await login(
      request({
        name: "mcpr",
        clientId: client.client_id,
        callbackHost: "localhost",
        callbackPath: "/oauth/callback",
        callbackPort: port,
      }),
      deps([], redirects),
    );
    assert.deepEqual(first.record.client.redirectUris, [redirectUri]);
    // Logging in again needs none of the flags: the registration remembers them.
    await login(request({ name: "mcpr" }), deps([], redirects));
    assert.deepEqual(redirects, [redirectUri, redirectUri]);
    assert.equal(bed.as.counters.registrations, 0);
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 2);
  });
});
