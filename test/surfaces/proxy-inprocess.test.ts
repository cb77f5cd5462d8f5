/**
 * The proxy in-process, on a manual clock: timing behaviour that a child process cannot show.
 * No timer is left when the session is idle; a call that runs for a long time keeps the token
 * refreshed ahead; nothing the proxy holds grows with the number of messages.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import {
  DEFAULT_REFRESH_AHEAD_MS,
  expiryMarginMs,
  refreshWindowMs,
} from "../../src/manager/refresh-policy.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";
import { type InProcessProxy, startInProcessProxy } from "../support/in-process-proxy.js";
import { textOf } from "./proxy-harness.js";

interface InProcess extends InProcessProxy {
  clock: ManualClock;
  manager: TokenManager;
  /** The manager's token requests now in flight (real HTTP to the bed). */
  requests: { inFlight: number };
}

/**
 * Moves the manual clock just past the moment the current token enters its refresh-ahead
 * window, and no further: the token request that may follow is real HTTP, and jumping past
 * its timeout would fail it.
 */
async function advanceIntoWindow(p: InProcess): Promise<void> {
  const tokens = p.manager.cached("bed")!.record.tokens!;
  const due = tokens.expiresAt! - expiryMarginMs(tokens) - refreshWindowMs(tokens, DEFAULT_REFRESH_AHEAD_MS);
  await p.clock.advance(due + 100 - p.clock.now());
  await settle(p);
}

async function inProcess(bed: TestBed): Promise<InProcess> {
  const clock = new ManualClock(Date.now());
  const store = new MemoryStore({ clock });
  await connectTestBed(bed, store, "bed", { now: clock.now() });
  const requests = { inFlight: 0 };
  const countingFetch: typeof fetch = async (input, init) => {
    requests.inFlight++;
    try {
      return await fetch(input, init);
    } finally {
      requests.inFlight--;
    }
  };
  const manager = new TokenManager({ store, clock, fetch: countingFetch });
  const proxy = await startInProcessProxy(
    { manager, resolve: async () => ({ connector: "bed", url: bed.mcpUrl }), clock },
    "in-process",
  );
  return { ...proxy, clock, manager, requests };
}

/**
 * Lets real I/O happen between manual clock steps: a token request started by the step runs
 * to its end, however long a loaded machine makes it (a request starts within the step's
 * microtasks, so by the first real wait it is counted).
 */
async function settle(p: InProcess, ms = 100): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + 30_000;
  while (p.requests.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  // The answer's save and the next timer are microtasks and memory-store steps after the request.
  await new Promise((r) => setTimeout(r, 20));
}

let bed: TestBed;
before(async () => {
  bed = await startTestBed();
});
after(async () => {
  await bed.close();
});

describe("tokenkeeper proxy timers and memory", () => {
  it("refreshes ahead while in use and leaves no timer once idle", async () => {
    const p = await inProcess(bed);
    try {
      assert.equal(textOf(await p.client.callTool({ name: "echo", arguments: { text: "x" } })), "x");
      assert.equal(p.proxy.stats().refreshTimer, true);
      bed.as.resetCounters();

      // Into the refresh-ahead window of the 1-hour token: used since, so it refreshes.
      await advanceIntoWindow(p);
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 1);
      assert.equal(p.proxy.stats().refreshTimer, true);

      // A whole token lifetime with no message: the timer lapses and nothing is set.
      await advanceIntoWindow(p);
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 1, "refreshed while idle");
      assert.equal(p.proxy.stats().refreshTimer, false);
      assert.equal(p.clock.pendingSleeps, 0, "a timer is still pending while idle");

      // Use resumes: calls work at once, and the timer is back.
      assert.equal(textOf(await p.client.callTool({ name: "echo", arguments: { text: "y" } })), "y");
      assert.equal(p.proxy.stats().refreshTimer, true);
    } finally {
      await p.stop();
    }
  });

  it("keeps the token fresh during a long call that sends nothing", async () => {
    const p = await inProcess(bed);
    try {
      const long = p.client.callTool({ name: "slow", arguments: { steps: 10, delayMs: 200 } });
      await settle(p, 50);
      bed.as.resetCounters();
      // The first window still sees the call's request; by the second, the call in flight is
      // the only sign of use: it must be enough.
      await advanceIntoWindow(p);
      await advanceIntoWindow(p);
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 2, "no refresh during the long call");
      assert.equal(p.proxy.stats().pending, 1);
      assert.equal(textOf(await long), "done after 10 steps");
    } finally {
      await p.stop();
    }
  });

  it("holds nothing per message: 2,000 pipelined calls leave no state behind", async () => {
    const p = await inProcess(bed);
    try {
      for (let batch = 0; batch < 20; batch++) {
        const calls = Array.from({ length: 100 }, (_, i) =>
          p.client.callTool({ name: "echo", arguments: { text: `${batch}-${i}` } }),
        );
        const results = await Promise.all(calls);
        assert.equal(textOf(results[99]), `${batch}-99`);
      }
      const stats = p.proxy.stats();
      assert.equal(stats.pending, 0);
      assert.equal(stats.outgoing, 0);
      assert.equal(stats.state, "ready");
      assert.equal(
        p.logs.filter((l) => !/proxying stdio/.test(l)).length,
        0,
        `logged per message: ${p.logs.slice(0, 3).join(" | ")}`,
      );
    } finally {
      await p.stop();
    }
  });
});
