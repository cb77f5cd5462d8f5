/**
 * No wait outlives its reason: after the token endpoint recovers, the next caller that needs a
 * token gets one within a probe interval (not when a 20-odd-second cool-down or backoff ends),
 * and a caller that set a bound on its wait gets a transient error at that bound while the
 * refresh goes on. Real authorization server, ManualClock; the clock only moves while no token
 * request is on the wire, so no fake time ever races a real request.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { ManualClock } from "../../src/core/clock.js";
import { TransientError } from "../../src/core/errors.js";
import type { TokenkeeperEvent } from "../../src/manager/events.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import type { FetchLike } from "../../src/oauth/http.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";
import { SharedManualClock } from "../support/shared-clock.js";
import { waitFor } from "../support/wait-for.js";

const HOUR = 3_600_000;

describe("waits end with their reason", () => {
  let bed: TestBed;
  let clock: ManualClock;
  let store: MemoryStore;
  let events: TokenkeeperEvent[];
  let manager: TokenManager;
  let inflight = 0;
  let n = 0;
  let name: string;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3600 });
  });
  after(async () => {
    bed.as.setClockOffset(0);
    await bed.close();
  });
  beforeEach(async () => {
    bed.as.clearTokenEndpointFailures();
    bed.as.setClockOffset(0);
    clock = new SharedManualClock(Date.now(), () => bed);
    store = new MemoryStore({ clock });
    events = [];
    inflight = 0;
    // Counts token requests on the wire, so the test moves the clock only between them. (A
    // request left over from an earlier test's manager does not count.)
    const mine = clock;
    const counting: FetchLike = async (input, init) => {
      if (mine === clock) inflight++;
      try {
        return await fetch(input, init);
      } finally {
        if (mine === clock) inflight--;
      }
    };
    manager = new TokenManager({
      store,
      clock,
      fetch: counting,
      random: () => 0.5,
      onEvent: (e) => events.push(e),
    });
    name = `w${++n}`;
    await connectTestBed(bed, store, name, { now: clock.now() });
    bed.as.resetCounters();
  });

  /** Moves fake time in small steps, each once no request is on the wire, until `done()`. */
  async function advanceUntil(done: () => boolean, stepMs: number, limitMs: number): Promise<number> {
    const start = clock.now();
    while (!done()) {
      if (clock.now() - start > limitMs) throw new Error(`not done after ${limitMs} ms of fake time`);
      await waitFor(() => inflight === 0 || done());
      if (done()) break;
      await clock.advance(stepMs);
    }
    return clock.now() - start;
  }

  const settled = <T>(p: Promise<T>) => {
    const state = { done: false, value: undefined as T | undefined, error: undefined as unknown };
    p.then(
      (v) => {
        state.value = v;
        state.done = true;
      },
      (e: unknown) => {
        state.error = e;
        state.done = true;
      },
    );
    return state;
  };

  it("the first call after a 503 outage clears gets a token within a probe interval, not at the end of the cool-down", async (t) => {
    bed.as.failTokenEndpoint(10_000, "503");
    await clock.advance(HOUR + 1);
    // A caller that needs a token rides the whole retry deadline (60 s) and gets the failure.
    const first = settled(manager.getAccessToken(name));
    await advanceUntil(() => first.done, 250, 120_000);
    assert.ok(first.error instanceof TransientError, String(first.error));
    const failed = events.find((e) => e.type === "refresh_failed");
    assert.ok(failed, "the refresh gave up");
    const attemptsInFlight = bed.as.counters.tokenRequests;

    // While the outage lasts, callers (every 100 ms) probe at most once per 1–2 s.
    const outageMs = 10_000;
    let failures = 0;
    for (let t = 0; t < outageMs; t += 100) {
      await assert.rejects(manager.getAccessToken(name), TransientError);
      failures++;
      await clock.advance(100);
    }
    const probes = bed.as.counters.tokenRequests - attemptsInFlight;
    assert.ok(probes >= 5 && probes <= 10, `${probes} probes in 10 s of calls every 100 ms`);
    assert.equal(failures, 100);

    // The server recovers. The old cool-down (~22 s from the last backoff) would have refused
    // every call without a request; now the next due probe succeeds.
    bed.as.clearTokenEndpointFailures();
    const recoveredAt = clock.now();
    let token: Awaited<ReturnType<TokenManager["getAccessToken"]>> | undefined;
    while (!token) {
      if (clock.now() - recoveredAt > 30_000) assert.fail("no token 30 s after recovery");
      try {
        token = await manager.getAccessToken(name);
      } catch (error) {
        assert.ok(error instanceof TransientError);
        await clock.advance(100);
      }
    }
    const recoveryMs = clock.now() - recoveredAt;
    assert.ok(recoveryMs <= 2_000, `first success ${recoveryMs} ms after recovery`);
    const cooldownLeft = (failed as { at: number }).at + 22_500 - recoveredAt;
    t.diagnostic(
      `503 outage: ${probes} probes in 10 s of calls every 100 ms; first success ${recoveryMs} ms after recovery (the cool-down alone had ${cooldownLeft} ms left)`,
    );
    assert.ok(token.expiresAt! > clock.now() + HOUR / 2);
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    assert.equal((await store.get(name))!.record.state.health, "ok");
  });

  it("a caller that needs a token cuts a background refresh's long backoff short once the server is back", async (t) => {
    bed.as.failTokenEndpoint(10_000, "503");
    // Inside the refresh-ahead window: callers get the current token, a refresh runs behind.
    await clock.advance(HOUR - 4 * 60_000);
    await manager.getAccessToken(name);
    // Let the background refresh back off until its sleep is long (≥ 10 s).
    const retrying = () =>
      events.filter((e): e is Extract<TokenkeeperEvent, { type: "retrying" }> => e.type === "retrying");
    for (let k = 1; ; k++) {
      await waitFor(() => retrying().length >= k && inflight === 0);
      const delay = retrying()[k - 1]!.delayMs;
      if (delay >= 10_000) break;
      await clock.advance(delay);
    }
    const requests = bed.as.counters.tokenRequests;
    bed.as.clearTokenEndpointFailures();
    const recoveredAt = clock.now();
    // A caller needing 10 minutes (more than the 4 left) must wait for a refresh.
    const needy = settled(manager.getAccessToken(name, { minTtlMs: 10 * 60_000 }));
    const waited = await advanceUntil(() => needy.done, 100, 30_000);
    assert.equal(needy.error, undefined, String(needy.error));
    assert.ok(needy.value!.expiresAt! - clock.now() >= 10 * 60_000);
    assert.ok(clock.now() - recoveredAt <= 2_000, `waited ${waited} ms after recovery`);
    t.diagnostic(`background backoff of 12 s cut short: token ${waited} ms after recovery`);
    assert.equal(bed.as.counters.tokenRequests, requests + 1, "one request: the probe");
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
  });

  it("with no caller waiting, a background refresh keeps its exponential backoff", async () => {
    bed.as.failTokenEndpoint(10_000, "503");
    await clock.advance(HOUR - 4 * 60_000);
    await manager.getAccessToken(name);
    const delays: number[] = [];
    for (let k = 1; k <= 6; k++) {
      await waitFor(() => events.filter((e) => e.type === "retrying").length >= k && inflight === 0);
      const e = events.filter((x) => x.type === "retrying")[k - 1] as Extract<
        TokenkeeperEvent,
        { type: "retrying" }
      >;
      delays.push(e.delayMs);
      // Callers content with the current token do not hurry it.
      await manager.getAccessToken(name);
      await clock.advance(e.delayMs);
    }
    await waitFor(() => events.filter((e) => e.type === "retrying").length >= 7 && inflight === 0);
    assert.deepEqual(delays, [375, 750, 1500, 3000, 6000, 12000]);
    assert.equal(bed.as.counters.tokenRequests, 7);
  });

  it("a caller's maxWaitMs ends its wait with a transient error; the refresh goes on and its token is kept", async () => {
    // The token endpoint answers after 3 s of real time (it still rotates the refresh token).
    bed.as.failTokenEndpoint(1, "slow", { delayMs: 3_000 });
    await clock.advance(HOUR + 1);
    const before = (await store.get(name))!.record.tokens!;
    const bounded = settled(manager.getAccessToken(name, { maxWaitMs: 2_000 }));
    await waitFor(() => inflight === 1);
    // The caller's bound passes (fake time) while the request is still on the wire. Safe: 2 s
    // of fake time is far from the request's own 10 s timeout, so nothing races the request.
    await clock.advance(2_000);
    await waitFor(() => bounded.done);
    assert.ok(bounded.error instanceof TransientError, String(bounded.error));
    assert.equal((bounded.error as TransientError).fields.kind, "wait_bound");
    // The request was not abandoned: its answer (a rotated refresh token) is saved.
    await waitFor(() => inflight === 0, 15_000);
    await waitFor(async () => (await store.get(name))!.record.state.refreshCount === 1);
    const saved = (await store.get(name))!.record.tokens!;
    assert.ok(!saved.refreshToken!.equals(before.refreshToken));
    const next = await manager.getAccessToken(name);
    assert.ok(next.token.equals(saved.accessToken));
    assert.equal(bed.as.counters.tokenRequests, 1);
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
  });
});
