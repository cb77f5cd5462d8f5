/**
 * Clock skew between this machine, the authorization server and the MCP server. The AS's clock
 * is 65 s ahead of ours or 65 s behind, and the MCP server judges `exp` either by our clock or by
 * the AS's: in all four cases neither `tokenkeeper token` nor the run's token endpoint may hand
 * out a token the MCP server already rejects, over several token lifetimes (the MCP server's own
 * 401 counter must stay at 0).
 *
 * Time: every party runs on the real clock plus one shared offset the test moves forward, so
 * 90 s tokens expire several times in a few seconds of wall time. Nothing races a fake clock:
 * timeouts and sleeps stay real; only "now" jumps, for everybody at once, between calls, and
 * only while no manager holds the refresh lock. A jump inside a holder's lease is a stall real
 * time cannot make: from the lease check to the durable save of the answer (the documented
 * residual window, see "Known limit" in the README) a few jumps of 5 s would expire the lease of
 * a refresher still saving, and the next one would send the refresh token it just spent.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Clock, systemClock } from "../../src/core/clock.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store, StoreLock } from "../../src/store/types.js";
import { startTokenEndpoint } from "../../src/surfaces/token-endpoint-server.js";
import type { TestBed } from "../bed/index.js";
import { type Harness, startHarness, waitFor } from "../cli/unattended-harness.js";
import { mcpAccepts } from "../support/mcp-accepts.js";

const SKEW_MS = 65_000;
const TTL_S = 90;

/** Real time plus an offset that moves only between calls, shared by us, the AS and the MCP server. */
class SharedTime implements Clock {
  #offsetMs = 0;
  constructor(
    private readonly bed: TestBed,
    /** The AS's clock minus ours. */
    private readonly asSkewMs: number,
    /** Whether the MCP server shares the AS's clock (else ours). */
    private readonly rsOnAsClock: boolean,
  ) {
    this.#apply();
  }
  now(): number {
    return Date.now() + this.#offsetMs;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
  advance(ms: number): void {
    this.#offsetMs += ms;
    this.#apply();
  }
  #apply(): void {
    this.bed.as.setClockOffset(this.#offsetMs + this.asSkewMs);
    this.bed.mcp.setClockOffset(this.#offsetMs + (this.rsOnAsClock ? this.asSkewMs : 0));
  }
}

/**
 * The store's refresh locks this store has handed out and not yet released: while one is held, a
 * refresh is between taking the lock and saving its answer (a response body being read, the
 * durable write), which the fetch counter alone does not see.
 */
function countLocks(store: Store): { held: () => number } {
  const held = new Set<StoreLock>();
  const lock = store.lock.bind(store);
  store.lock = async (name, options) => {
    const taken = await lock(name, options);
    held.add(taken);
    const release = taken.release.bind(taken);
    (taken as { release: StoreLock["release"] }).release = async () => {
      try {
        await release();
      } finally {
        held.delete(taken);
      }
    };
    return taken;
  };
  return { held: () => held.size };
}

describe("clock skew: no token handed out is already expired at the MCP server", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: TTL_S });
  });
  after(async () => {
    h.bed.as.setClockOffset(0);
    h.bed.mcp.setClockOffset(0);
    await h.close();
  });

  for (const asSkewMs of [SKEW_MS, -SKEW_MS]) {
    for (const rsOnAsClock of [false, true]) {
      const title = `AS ${asSkewMs > 0 ? "ahead" : "behind"} by 65 s, MCP server on ${rsOnAsClock ? "the AS's" : "our"} clock: 0 rejected calls over 4 lifetimes of ${TTL_S} s tokens`;
      it(title, async (t) => {
        const name = `skew-${asSkewMs > 0 ? "ahead" : "behind"}-${rsOnAsClock ? "as" : "ours"}`;
        // The clocks disagree from the start: the first token set, like every later one, comes
        // from Tokenkeeper's own token-endpoint call (as after a login), not from the seeding.
        const time = new SharedTime(h.bed, asSkewMs, rsOnAsClock);
        await h.connect(name);
        // The run's manager, as `tokenkeeper run` makes it: its store judges lock leases by the same
        // clock as every other process. Its background refreshes are counted (requests in flight
        // and refresh locks held), so that time only moves when no refresh is under way: a jump
        // inside a lease would be a stall (the `token` commands are awaited, so they hold none).
        const store = await openStore(h.storeUrl, { env: h.env, clock: time });
        const locks = countLocks(store);
        let pending = 0;
        const manager = new TokenManager({
          store,
          clock: time,
          fetch: async (input, init) => {
            pending++;
            try {
              return await fetch(input, init);
            } finally {
              pending--;
            }
          },
        });
        await manager.refreshNow(name);
        const endpoint = await startTokenEndpoint({ manager, connectors: [name] });
        // Counters per case: a failure here must not fail the cases after it.
        h.bed.mcp.resetCounters();
        h.bed.as.resetCounters();
        const rejected: string[] = [];
        let calls = 0;
        try {
          // Every 5 s of shared time for 4 token lifetimes: one token from `tokenkeeper token`
          // (its own manager, from the store), one from inside a run (the run's manager).
          for (let at = 0; at <= 4 * TTL_S * 1000; at += 5_000) {
            calls += 2;
            const viaToken = await h.cli(["token", name], { clock: time });
            assert.equal(viaToken.code, 0, viaToken.stderr);
            if (!(await mcpAccepts(h.bed.mcpUrl, viaToken.stdout.trim())))
              rejected.push(`token at +${at / 1000}s`);
            const viaRun = await h.cli(["token", name], { clock: time, env: endpoint.env() });
            assert.equal(viaRun.code, 0, viaRun.stderr);
            if (!(await mcpAccepts(h.bed.mcpUrl, viaRun.stdout.trim())))
              rejected.push(`run at +${at / 1000}s`);
            await waitFor(
              () => pending === 0 && locks.held() === 0,
              30_000,
              "the run's background refresh to end",
            );
            time.advance(5_000);
          }
        } finally {
          await endpoint.close();
          await manager.close();
          await store.close();
          h.bed.as.setClockOffset(0);
          h.bed.mcp.setClockOffset(0);
        }
        const refreshes = h.bed.as.counters.refreshGrantsSucceeded;
        t.diagnostic(
          `${calls} calls, ${rejected.length} rejected, ${h.bed.mcp.counters.unauthorized} 401s at the MCP server, ${refreshes} refreshes`,
        );
        assert.deepEqual(rejected, [], "tokens the MCP server rejected");
        assert.equal(h.bed.mcp.counters.unauthorized, 0, "401s counted by the MCP server");
        assert.equal(h.bed.as.counters.refreshTokenReuse, 0, "no refresh token presented twice");
        assert.deepEqual(h.bed.as.counters.rejectedRefreshReasons, [], "refresh tokens the server refused");
        // Several lifetimes really passed: the connector was refreshed at least once per lifetime.
        assert.ok(refreshes >= 4, `refreshes: ${refreshes}`);
        // status shows the same expiry every decision used, and what the server stated.
        const status = await h.cli(["status", name, "--json"], { clock: time });
        const shown = (JSON.parse(status.stdout) as { connectors: Record<string, unknown>[] }).connectors[0]!;
        assert.ok(
          Math.abs((shown.clock_skew_ms as number) - asSkewMs) < 2_000,
          `skew ${shown.clock_skew_ms}`,
        );
        const stored = (await h.store.get(name))!.record.tokens!;
        assert.equal(shown.access_token_expires_at, new Date(stored.expiresAt!).toISOString());
        // What the skew took off: 65 s when the AS is behind, nothing (beyond the measurement's
        // one-second resolution) when it is ahead.
        const granted = shown.access_token_granted_expires_at as string | null;
        const cut = granted === null ? 0 : Date.parse(granted) - stored.expiresAt!;
        assert.ok(Math.abs(cut - (asSkewMs < 0 ? SKEW_MS : 0)) < 2_000, `taken off for skew: ${cut} ms`);
      });
    }
  }

  it("a lifetime shorter than the skew: exit 78 expired_on_arrival, one refresh, no loop, the rotated token kept", async () => {
    const short = await startHarness({ accessTokenTtl: 60 });
    try {
      const time = new SharedTime(short.bed, -SKEW_MS, false);
      await short.connect("short");
      const store = await openStore(short.storeUrl, { env: short.env, clock: time });
      const manager = new TokenManager({ store, clock: time });
      const endpoint = await startTokenEndpoint({ manager, connectors: ["short"] });
      try {
        // Make the seeded token stale, so the next call must refresh.
        time.advance(60_000);
        const grants = () => short.bed.as.counters.refreshGrantsSucceeded;
        const before = grants();
        for (let i = 0; i < 5; i++) {
          const r = await short.cli(["token", "short"], { clock: time });
          assert.equal(r.code, 78, r.stderr);
          assert.equal(r.stdout, "");
          assert.match(
            r.stderr,
            /^tokenkeeper: expired_on_arrival: .*expired when it arrived: the server grants 1m and the clock of \S+ is 1m[45]s behind/,
          );
          const viaRun = await short.cli(["token", "short"], { clock: time, env: endpoint.env() });
          assert.equal(viaRun.code, 78, viaRun.stderr);
          assert.match(viaRun.stderr, /expired_on_arrival/);
          time.advance(5_000);
        }
        assert.equal(grants() - before, 1, "one refresh for ten calls within a minute");
        // A minute later it looks again, once: the refresh token it saved is the current one.
        time.advance(60_000);
        const again = await short.cli(["token", "short"], { clock: time });
        assert.equal(again.code, 78);
        assert.equal(grants() - before, 2);
        assert.equal(short.bed.as.counters.refreshTokenReuse, 0);
        // The clocks agree again: the next look hands out a good token.
        time.advance(60_000);
        short.bed.as.setClockOffset(0);
        short.bed.mcp.setClockOffset(0);
        const fixed = await short.cli(["token", "short"], { clock: systemClock });
        assert.equal(fixed.code, 0, fixed.stderr);
        assert.ok(await mcpAccepts(short.bed.mcpUrl, fixed.stdout.trim()));
      } finally {
        await endpoint.close();
        await manager.close();
        await store.close();
      }
    } finally {
      await short.close();
    }
  });
});
