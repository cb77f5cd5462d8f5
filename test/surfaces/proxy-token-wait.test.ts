/**
 * The proxy's own bound on getting a token: when the stored token has expired and the token
 * endpoint fails (503s, or hangs), a call is answered within the token wait (default 3 s) with
 * the typed transient error (-32031), not after the manager's whole retry deadline; the refresh
 * goes on behind it, and the first call after the endpoint recovers goes through. The proxy runs
 * as the real CLI child process against the test bed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ConnectorSettings } from "../../src/core/record.js";
import { updateRecord } from "../../src/store/update.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type Home, homeWithConnector, type RawMessage, spawnRaw } from "./proxy-harness.js";

const UNAVAILABLE = -32031;

const INITIALIZE = {
  protocolVersion: "2025-06-18",
  capabilities: {},
  clientInfo: { name: "token-wait-test", version: "1.0.0" },
};

let bed: TestBed;

before(async () => {
  bed = await startTestBed({ accessTokenTtl: 3600 });
});
after(async () => {
  bed.as.clearTokenEndpointFailures();
  await bed.close();
});

async function expiredHome(name: string, settings?: ConnectorSettings): Promise<Home> {
  const home = await homeWithConnector(bed, name, undefined, settings);
  await updateRecord(home.store, name, (rec) => ({
    ...rec,
    tokens: { ...rec.tokens!, expiresAt: Date.now() - 1_000, obtainedAt: Date.now() - 3_601_000 },
  }));
  return home;
}

/**
 * With the token endpoint failing and a 1 s token wait: once the proxy is up, the first call
 * starts the refresh; the next is answered -32031 after about that second. Returns its time.
 */
async function callBoundedByOneSecond(raw: ReturnType<typeof spawnRaw>): Promise<number> {
  await waitForStderr(raw, /proxying stdio to/);
  await timed(raw, "initialize", INITIALIZE);
  const call = await timed(raw, "initialize", INITIALIZE);
  assert.equal(call.answer.error?.code, UNAVAILABLE, JSON.stringify(call.answer));
  assert.ok(call.ms >= 800 && call.ms < 3_000, `answered after ${call.ms} ms`);
  assert.match(call.answer.error!.message, /within 1000 ms/);
  return call.ms;
}

/**
 * The endpoint answers again, the proxy ends with its stdin, and its home goes. A hung token
 * request is hung up first: a proxy finishes a refresh it sent before exiting (its answer may
 * carry the rotated refresh token), which against a hung endpoint lasts the request's timeout.
 */
async function endProxy(raw: ReturnType<typeof spawnRaw>, home: Home): Promise<void> {
  bed.as.clearTokenEndpointFailures();
  bed.as.dropHungTokenRequests();
  raw.child.stdin!.end();
  await raw.exited;
  await home.cleanup();
}

/** Sends a request and measures how long its answer took. */
async function timed(
  raw: ReturnType<typeof spawnRaw>,
  method: string,
  params: Record<string, unknown>,
): Promise<{ answer: RawMessage; ms: number }> {
  const started = Date.now();
  const answer = await raw.request(method, params, 60_000);
  return { answer, ms: Date.now() - started };
}

describe("tokenkeeper proxy: a call waits a bounded time for its token", () => {
  it("answers -32031 within the default 3 s while the token endpoint answers 503, then recovers at the next call", async (t) => {
    const home = await expiredHome("flaky");
    bed.as.resetCounters();
    bed.as.failTokenEndpoint(10_000, "503");
    const raw = spawnRaw(home, "flaky");
    try {
      // The proxy is up and has started its own (bounded) token check.
      await waitForStderr(raw, /proxying stdio to/);
      const first = await timed(raw, "initialize", INITIALIZE);
      assert.equal(first.answer.error?.code, UNAVAILABLE, JSON.stringify(first.answer));
      assert.ok(first.ms < 5_000, `first call answered after ${first.ms} ms`);
      const data = first.answer.error!.data as { code?: string; status?: string };
      assert.equal(data.code, "transient");
      assert.equal(data.status, "skipped");

      // A call once the proxy is ready: its own 3 s, not the manager's 30 s retry deadline.
      const second = await timed(raw, "initialize", INITIALIZE);
      assert.equal(second.answer.error?.code, UNAVAILABLE, JSON.stringify(second.answer));
      assert.ok(second.ms >= 2_500 && second.ms < 5_000, `second call answered after ${second.ms} ms`);
      assert.match(second.answer.error!.message, /within 3000 ms/);
      assert.ok(bed.as.counters.injectedFailures >= 2, "the refresh kept trying meanwhile");

      // The endpoint recovers: the next call gets through (a probe, not the end of a backoff).
      bed.as.clearTokenEndpointFailures();
      const recovered = await timed(raw, "initialize", INITIALIZE);
      assert.equal(recovered.answer.error, undefined, JSON.stringify(recovered.answer));
      // A probe is due 1–2 s after the last failure; the rest is the call itself, on a loaded machine.
      assert.ok(recovered.ms < 4_000, `the call after recovery took ${recovered.ms} ms`);
      raw.send({ method: "notifications/initialized" });
      const echo = await raw.request("tools/call", { name: "echo", arguments: { text: "back" } });
      assert.equal(echo.error, undefined, JSON.stringify(echo));
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 1);
      t.diagnostic(
        `503 endpoint: first call -32031 after ${first.ms} ms, next ${second.ms} ms; after recovery ${recovered.ms} ms`,
      );
      assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
      assert.equal(bed.as.counters.refreshTokenReuse, 0);
    } finally {
      await endProxy(raw, home);
    }
  });

  it("TOKENKEEPER_PROXY_TOKEN_WAIT=1s bounds a call against a token endpoint that never answers", async (t) => {
    const home = await expiredHome("hung");
    bed.as.failTokenEndpoint(10_000, "slow", { delayMs: Number.POSITIVE_INFINITY });
    const raw = spawnRaw(home, "hung", [], { TOKENKEEPER_PROXY_TOKEN_WAIT: "1s" });
    try {
      const ms = await callBoundedByOneSecond(raw);
      t.diagnostic(`hung endpoint, token wait 1s: -32031 after ${ms} ms`);
    } finally {
      await endProxy(raw, home);
    }
    assert.equal(bed.as.counters.refreshTokenReuse, 0);
  });

  it("takes the connector's own proxy_token_wait setting", async () => {
    const home = await expiredHome("configured", { proxyTokenWaitMs: 1_000 });
    bed.as.failTokenEndpoint(10_000, "503");
    const raw = spawnRaw(home, "configured");
    try {
      await callBoundedByOneSecond(raw);
    } finally {
      await endProxy(raw, home);
    }
  });

  it("rejects a --token-wait that is not a duration (usage, exit 64)", async () => {
    const home = await homeWithConnector(bed, "flags");
    const raw = spawnRaw(home, "flags", ["--token-wait", "soon"]);
    try {
      const exit = await raw.exited;
      assert.equal(exit.code, 64, raw.stderr());
      assert.match(raw.stderr(), /--token-wait "soon" is not a duration/);
    } finally {
      await home.cleanup();
    }
  });
});

async function waitForStderr(raw: ReturnType<typeof spawnRaw>, pattern: RegExp, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pattern.test(raw.stderr())) {
    if (Date.now() > deadline) throw new Error(`stderr never matched ${pattern}:\n${raw.stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
