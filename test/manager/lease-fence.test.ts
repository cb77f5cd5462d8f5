/**
 * The lease check before every token request, in one process, against the real authorization
 * server and on the real clock (every wait here is a real one, bounded generously): a holder
 * that stalled past its lease reads the store again instead of sending, and a request's timeout
 * never outlives the lease. The multi-process version, with a real SIGSTOP on the file, Redis
 * and PostgreSQL stores, is test/fleet/paused-holder.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigError, TransientError } from "../../src/core/errors.js";
import type { TokenkeeperEvent } from "../../src/manager/events.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";

describe("the refresh lease fences the token request, not only the write", () => {
  let bed: TestBed;
  let store: MemoryStore;
  let n = 0;
  let name: string;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3600 });
  });
  after(async () => {
    await bed.close();
  });
  beforeEach(async () => {
    store = new MemoryStore();
    name = `lease${++n}`;
    await connectTestBed(bed, store, name);
    bed.as.resetCounters();
    bed.as.clearTokenEndpointFailures();
  });

  it("a holder that stalled past its lease, with nobody else refreshing, takes the lock again and refreshes once", async () => {
    let stalls = 0;
    const events: TokenkeeperEvent[] = [];
    const manager = new TokenManager({
      store,
      lock: { leaseMs: 3_000, marginMs: 300 },
      onEvent: (e) => events.push(e),
      hooks: {
        // A stall (a long GC, a suspended VM) that outlasts the lease, the first time only.
        beforeTokenRequest: async () => {
          if (stalls++ === 0) await sleep(3_100);
        },
      },
    });
    const before = (await store.get(name))!.record.tokens!;
    const token = await manager.refreshNow(name);
    await manager.close();
    // Twice at least: the first check found the lease gone; a loaded machine may need another.
    assert.ok(stalls >= 2, "checked the lease again after taking the lock again");
    assert.equal(bed.as.counters.grants.refresh_token, 1, "one refresh grant");
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    assert.ok(!token.token.equals(before.accessToken), "a new token");
    assert.equal(events.filter((e) => e.type === "retrying").length, 0, "not counted as a failure");
  });

  it("a holder whose lease is too short for its request sends nothing and reads the store again", async () => {
    // Another manager refreshes while the first one stalls; the first then finds its lease gone.
    const other = new TokenManager({ store });
    let otherToken: Awaited<ReturnType<TokenManager["refreshNow"]>> | undefined;
    const manager = new TokenManager({
      store,
      lock: { leaseMs: 1_500, marginMs: 300 },
      hooks: {
        beforeTokenRequest: async () => {
          if (otherToken) return;
          await sleep(1_600);
          otherToken = await other.refreshNow(name);
        },
      },
    });
    const token = await manager.refreshNow(name);
    await manager.close();
    await other.close();
    assert.equal(bed.as.counters.grants.refresh_token, 1, "only the other manager made a refresh grant");
    assert.equal(bed.as.counters.refreshTokenReuse, 0);
    assert.ok(
      otherToken && token.token.equals(otherToken.token),
      "the stalled holder ends with the other's token",
    );
  });

  it("caps a token request's timeout at the lease left minus the margin", async () => {
    // The token endpoint never answers; the configured request timeout (60 s) is far longer
    // than the lease (4 s, margin 1.5 s): the request is given up while the lease still holds.
    bed.as.failTokenEndpoint(1, "slow", { delayMs: Number.POSITIVE_INFINITY, grantType: "refresh_token" });
    const manager = new TokenManager({
      store,
      requestTimeoutMs: 60_000,
      lock: { leaseMs: 4_000, marginMs: 1_500 },
      // Just over the lease's 2.5 s: the lease, not the deadline, bounds the one request, and no
      // retry fits after it.
      retry: { deadlineMs: 2_600 },
    });
    const started = Date.now();
    const failure = await manager.refreshNow(name).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    await manager.close();
    assert.ok(failure instanceof TransientError, String(failure));
    assert.equal(failure.fields.kind, "timeout");
    const timeoutMs = failure.fields.timeoutMs as number;
    assert.ok(
      timeoutMs > 0 && timeoutMs <= 2_500,
      `the request's timeout was ${timeoutMs} ms: the lease left minus the margin`,
    );
    assert.ok(elapsed < 30_000, `gave up after ${elapsed} ms, not the configured 60 s`);
    assert.equal(bed.as.counters.tokenRequests, 1);
  });

  it("refuses a lease that leaves no time for a request after its margin", () => {
    assert.throws(() => new TokenManager({ store, lock: { leaseMs: 1_000, marginMs: 500 } }), ConfigError);
    assert.throws(() => new TokenManager({ store, lock: { leaseMs: 800 } }), ConfigError);
    // A request timeout shorter than the floor is what the lease must leave room for.
    new TokenManager({ store, requestTimeoutMs: 400, lock: { leaseMs: 800 } });
  });
});
