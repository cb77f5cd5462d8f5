/**
 * `tokenkeeper token` against a hung token endpoint: `$(tokenkeeper token NAME)` returns as soon
 * as the token is printed, `--timeout` is the whole wait, and no rotated refresh token is lost
 * on the way (the server's own counters say so).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { updateRecord } from "../../src/store/update.js";
import { type Harness, startHarness } from "./unattended-harness.js";

const MINUTE = 60_000;

describe("tokenkeeper token: bounded waits", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 3600 });
    await h.connect("window");
    await h.connect("stale");
    await h.connect("fresh");
  });
  after(async () => {
    h.bed.as.clearTokenEndpointFailures();
    await h.close();
  });

  /** Puts the connector's token `leftMs` from expiry (a 1 h token, so the refresh-ahead window is 5 min). */
  async function expireIn(name: string, leftMs: number): Promise<void> {
    await updateRecord(h.store, name, (rec) => ({
      ...rec,
      tokens: {
        ...rec.tokens!,
        expiresAt: Date.now() + leftMs,
        obtainedAt: Date.now() + leftMs - 60 * MINUTE,
      },
    }));
  }

  it("inside the refresh-ahead window, prints the token and exits at once, with no request left behind", async (t) => {
    await expireIn("window", 4 * MINUTE);
    const current = (await h.store.get("window"))!.record.tokens!.accessToken.reveal();
    h.bed.as.failTokenEndpoint(100, "slow", { delayMs: Number.POSITIVE_INFINITY });
    const requests = h.bed.as.counters.tokenRequests;
    try {
      const started = Date.now();
      const r = await h.cli(["token", "window"]);
      const elapsed = Date.now() - started;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${current}\n`);
      assert.ok(elapsed < 2_000, `the command took ${elapsed} ms`);

      // As a real process, what `$(…)` waits for: exit, measured against a fresh token's exit.
      const t0 = Date.now();
      const baseline = await h.spawnCli(["token", "fresh"]).done;
      const baselineMs = Date.now() - t0;
      const t1 = Date.now();
      const windowed = await h.spawnCli(["token", "window"]).done;
      const windowMs = Date.now() - t1;
      assert.equal(baseline.code, 0, baseline.stderr);
      assert.equal(windowed.code, 0, windowed.stderr);
      assert.equal(windowed.stdout, `${current}\n`);
      // Generous for a loaded machine (process start-up varies); before, a request timeout (10 s) more.
      assert.ok(windowMs < baselineMs + 5_000, `exit after ${windowMs} ms (fresh token: ${baselineMs} ms)`);
      t.diagnostic(
        `in-window token, hung endpoint: command ${elapsed} ms; process exit ${windowMs} ms (fresh-token baseline ${baselineMs} ms)`,
      );

      // No refresh was started, so none was cut short: the server saw no request at all.
      assert.equal(h.bed.as.counters.tokenRequests, requests);
    } finally {
      h.bed.as.clearTokenEndpointFailures();
    }
    // The grant is intact: the first call that needs more than the 4 minutes left refreshes.
    const r = await h.cli(["token", "window", "--min-ttl", "10m"]);
    assert.equal(r.code, 0, r.stderr);
    const saved = (await h.store.get("window"))!.record;
    assert.equal(r.stdout, `${saved.tokens!.accessToken.reveal()}\n`);
    assert.notEqual(r.stdout, `${current}\n`);
    assert.equal(saved.state.rotationCount, 1);
    assert.equal(h.bed.as.counters.rejectedRefreshTokens, 0);
    assert.equal(h.bed.as.counters.refreshTokenReuse, 0);
  });

  it("--timeout 2s against a hung token endpoint ends in about 2 s with exit 75", async (t) => {
    await expireIn("stale", -1_000);
    h.bed.as.failTokenEndpoint(100, "slow", { delayMs: Number.POSITIVE_INFINITY });
    const requests = h.bed.as.counters.tokenRequests;
    try {
      const started = Date.now();
      const r = await h.cli(["token", "stale", "--timeout", "2s"]);
      const elapsed = Date.now() - started;
      assert.equal(r.code, 75, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /transient/);
      // 2 s, plus slack for a loaded machine; before, one request timeout (10 s) more.
      assert.ok(elapsed >= 1_900 && elapsed < 4_000, `--timeout 2s took ${elapsed} ms`);
      t.diagnostic(`--timeout 2s, hung endpoint: exit 75 after ${elapsed} ms`);
      assert.equal(h.bed.as.counters.tokenRequests, requests + 1, "one request, cut at the deadline");
    } finally {
      h.bed.as.clearTokenEndpointFailures();
    }
    // The hung request never reached the grant: the refresh token still works.
    const r = await h.cli(["token", "stale"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(h.bed.as.counters.rejectedRefreshTokens, 0);
  });
  it("inside `tokenkeeper run`, --timeout bounds the wait for the run's endpoint too", async () => {
    // A run endpoint that takes the request and never answers (a run stuck on its own refresh).
    const held: import("node:http").ServerResponse[] = [];
    const { createServer } = await import("node:http");
    const server = createServer((_req, res) => void held.push(res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as import("node:net").AddressInfo;
    try {
      const started = Date.now();
      const r = await h.cli(["token", "fresh", "--timeout", "1s"], {
        env: {
          ...h.env,
          TOKENKEEPER_RUN_URL: `http://127.0.0.1:${port}/`,
          TOKENKEEPER_RUN_SECRET: "s".repeat(32),
        },
      });
      const ms = Date.now() - started;
      assert.equal(r.code, 75, r.stderr);
      assert.equal(r.stdout, "");
      assert.ok(ms < 5_000, `answered after ${ms} ms`);
      assert.match(r.stderr, /timed out after 1000 ms/);
    } finally {
      for (const res of held) res.destroy();
      server.close();
    }
  });
});
