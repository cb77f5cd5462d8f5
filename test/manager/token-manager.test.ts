/**
 * The token manager against the real authorization server of the test bed. Time in the
 * manager is a ManualClock, so "an hour later" takes no time; the server's own counters say
 * how many refreshes really happened.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { ManualClock } from "../../src/core/clock.js";
import {
  NotFoundError,
  ReauthRequiredError,
  StoreUnavailableError,
  TransientError,
} from "../../src/core/errors.js";
import type { TokenkeeperEvent } from "../../src/manager/events.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";
import { SharedManualClock } from "../support/shared-clock.js";
import { waitFor } from "../support/wait-for.js";

const HOUR = 3_600_000;

// Real requests, counted: a test may move the manual clock only while none is in flight, or it
// would fire a pending request's timeout that real time never reached (a loaded machine makes
// requests slow, not the clock).
let inFlight = 0;
const countingFetch: typeof fetch = async (input, init) => {
  inFlight++;
  try {
    return await fetch(input, init);
  } finally {
    inFlight--;
  }
};
/** The skew measurement and a JWT's `exp` have one-second resolution. */
const RESOLUTION = 2_000;

describe("TokenManager against a real authorization server", () => {
  let bed: TestBed;
  let clock: ManualClock;
  let store: MemoryStore;
  let events: TokenkeeperEvent[];
  let manager: TokenManager;
  let n = 0;
  let name: string;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3600 });
  });
  after(async () => {
    await bed.close();
  });
  beforeEach(async () => {
    bed.as.setClockOffset(0);
    clock = new SharedManualClock(Date.now(), () => bed);
    store = new MemoryStore({ clock });
    events = [];
    manager = new TokenManager({
      store,
      clock,
      random: () => 0.5,
      fetch: countingFetch,
      onEvent: (e) => events.push(e),
    });
    name = `c${++n}`;
    await connectTestBed(bed, store, name, { now: clock.now() });
    bed.as.resetCounters();
  });

  const refreshGrants = () => bed.as.counters.grants.refresh_token;
  const stored = async () => (await store.get(name))!.record;

  it("serves a fresh token from memory with no network call", async () => {
    const first = await manager.getAccessToken(name);
    for (let i = 0; i < 100; i++) assert.ok((await manager.getAccessToken(name)).token.equals(first.token));
    assert.equal(bed.as.counters.tokenRequests, 0);
  });

  it("refreshes ahead of expiry and rotates the refresh token on every use, persisting each rotation", async () => {
    const seen = new Set<string>();
    for (let round = 1; round <= 3; round++) {
      const before = await stored();
      // 4 minutes before expiry: inside the 5-minute window, still valid: the current token
      // comes back at once and a refresh runs in the background.
      await clock.advance(before.tokens!.expiresAt! - clock.now() - 4 * 60_000);
      const handed = await manager.getAccessToken(name);
      assert.ok(
        handed.token.equals(before.tokens!.accessToken),
        "the still-valid token is handed out during the refresh",
      );
      await waitFor(() => refreshGrants() === round);
      await waitFor(async () => (await stored()).state.refreshCount === round);
      const after = await stored();
      assert.ok(!after.tokens!.refreshToken!.equals(before.tokens!.refreshToken), "refresh token rotated");
      assert.equal(after.state.rotationCount, round);
      assert.ok(Math.abs(after.tokens!.expiresAt! - after.tokens!.obtainedAt - HOUR) < RESOLUTION);
      const next = await manager.getAccessToken(name);
      assert.ok(next.token.equals(after.tokens!.accessToken), "callers get the persisted token");
      seen.add(next.token.reveal());
    }
    assert.equal(seen.size, 3);
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    assert.deepEqual(
      events.filter((e) => e.type === "rotated").map((e) => (e as { rotationCount: number }).rotationCount),
      [1, 2, 3],
    );
  });

  it("refreshes once for 1,000 concurrent callers after expiry", async () => {
    await clock.advance(HOUR + 1_000);
    const tokens = await Promise.all(Array.from({ length: 1000 }, () => manager.getAccessToken(name)));
    assert.equal(refreshGrants(), 1);
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    assert.equal(new Set(tokens.map((t) => t.token.reveal())).size, 1);
    assert.ok(tokens[0]!.token.equals((await stored()).tokens!.accessToken));
  });

  it("refreshes when the caller needs a longer life than is left (min TTL)", async () => {
    await clock.advance(HOUR - 20 * 60_000);
    const t = await manager.getAccessToken(name, { minTtlMs: 30 * 60_000 });
    assert.equal(refreshGrants(), 1);
    assert.ok(t.expiresAt! - clock.now() >= 30 * 60_000);
  });

  it("keeps handing out the valid token through a 503 burst, and refreshes once the server recovers", async () => {
    bed.as.failTokenEndpoint(3, "503");
    await clock.advance(HOUR - 4 * 60_000);
    const current = (await stored()).tokens!.accessToken;
    for (let i = 0; i < 5; i++) assert.ok((await manager.getAccessToken(name)).token.equals(current));
    // Let each backoff sleep run out once the manager has announced it.
    const retries = () =>
      events.filter((e): e is Extract<TokenkeeperEvent, { type: "retrying" }> => e.type === "retrying");
    for (let k = 1; k <= 3; k++) {
      await waitFor(() => retries().length >= k);
      assert.ok((await manager.getAccessToken(name)).token.equals(current), "still served during retries");
      await clock.advance(retries()[k - 1]!.delayMs);
    }
    await waitFor(() => refreshGrants() === 1);
    assert.equal(bed.as.counters.injectedFailures, 3);
    assert.equal(events.filter((e) => e.type === "retrying").length, 3);
    await waitFor(async () => (await stored()).state.refreshCount === 1);
    assert.equal((await stored()).state.health, "ok");
  });

  it("waits at least the server's Retry-After before trying again", async () => {
    bed.as.failTokenEndpoint(1, "429", { retryAfterSeconds: 7 });
    await clock.advance(HOUR + 1);
    const pending = manager.getAccessToken(name);
    await waitFor(() => events.some((e) => e.type === "retrying"));
    const retrying = events.find((e) => e.type === "retrying") as Extract<
      TokenkeeperEvent,
      { type: "retrying" }
    >;
    assert.ok(retrying.delayMs >= 7_000, `delay ${retrying.delayMs}`);
    assert.equal(retrying.error.status, 429);
    await clock.advance(6_900);
    assert.equal(bed.as.counters.tokenRequests, 1, "no request before Retry-After elapsed");
    await clock.advance(200);
    await pending;
    assert.equal(bed.as.counters.tokenRequests, 2);
  });

  it("gives up with a transient error at the retry deadline when the token has expired", async () => {
    bed.as.failTokenEndpoint(1000, "html");
    try {
      await clock.advance(HOUR + 1);
      let settled = false;
      const outcome = manager.getAccessToken(name).then(
        () => undefined,
        (e: unknown) => e,
      );
      void outcome.finally(() => (settled = true));
      for (let i = 0; i < 40 && !settled; i++) {
        await waitFor(() => (inFlight === 0 && clock.pendingSleeps > 0) || settled);
        await clock.advance(30_000);
      }
      const error = await outcome;
      assert.ok(error instanceof TransientError, String(error));
      assert.ok(bed.as.counters.tokenRequests <= 12, `bounded attempts: ${bed.as.counters.tokenRequests}`);
      assert.equal((await stored()).state.health, "degraded");
      // After giving up, callers fail fast instead of hammering the server: at most one of
      // them probes (once per probe interval), the rest get the failure from memory.
      const requests = bed.as.counters.tokenRequests;
      for (let i = 0; i < 10; i++) await assert.rejects(manager.getAccessToken(name), TransientError);
      assert.ok(bed.as.counters.tokenRequests <= requests + 1, "one probe at most");
    } finally {
      bed.as.clearTokenEndpointFailures();
    }
  });

  it("reports a revoked grant as reauth_required at once, records it, and does not retry", async () => {
    await bed.as.revokeAllGrants();
    await clock.advance(HOUR + 1);
    const started = Date.now();
    const error = await manager.getAccessToken(name).then(
      () => assert.fail("expected reauth_required"),
      (e: unknown) => e,
    );
    assert.ok(Date.now() - started < 2_000);
    assert.ok(error instanceof ReauthRequiredError);
    assert.equal(error.code, "reauth_required");
    assert.equal(error.reason, "invalid_grant");
    assert.equal(error.fields.serverError, "invalid_grant");
    assert.match(error.action, /tokenkeeper login .* --name 'c\d+'/);
    assert.equal(refreshGrants(), 1, "exactly one request to the token endpoint");
    const record = await stored();
    assert.equal(record.state.health, "reauth_required");
    assert.equal(record.state.reauth?.reason, "invalid_grant");
    // Later calls, in this process or a new one, fail fast without touching the server.
    for (let i = 0; i < 20; i++) await assert.rejects(manager.getAccessToken(name), ReauthRequiredError);
    const other = new TokenManager({ store, clock });
    await assert.rejects(other.getAccessToken(name), ReauthRequiredError);
    assert.equal(bed.as.counters.tokenRequests, 1);
    assert.equal(events.filter((e) => e.type === "reauth_required").length, 1);
  });

  it("a revoked grant another process records first: the recorded verdict, and no second reauth_required event", async () => {
    // The first write of the verdict loses a race to an identical one (another process saw the
    // same invalid_grant): the retry finds it recorded, so this process has nothing to announce.
    const racing = new FlakyStore(store);
    racing.beforePut = async (record, expected) => {
      racing.beforePut = undefined;
      if (record.state.health === "reauth_required") await store.put(name, record, expected);
    };
    const m = new TokenManager({
      store: racing,
      clock,
      fetch: countingFetch,
      onEvent: (e) => events.push(e),
    });
    await bed.as.revokeAllGrants();
    await clock.advance(HOUR + 1);
    const error = await m.getAccessToken(name).then(
      () => assert.fail("expected reauth_required"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ReauthRequiredError, String(error));
    assert.equal((await stored()).state.health, "reauth_required");
    assert.equal(events.filter((e) => e.type === "reauth_required").length, 0);
  });

  it("a refresh answer lost after the server rotated ends as a clear reauth_required, not a retry loop", async () => {
    // The server processes the refresh, then the connection drops: our refresh token is now
    // "already used" and a strict-rotation server revokes the grant on the retry (RFC 9700 §4.14.2).
    bed.as.failTokenEndpoint(1, "drop", { afterProcessing: true });
    await clock.advance(HOUR + 1);
    const pending = manager.getAccessToken(name).then(
      () => assert.fail("expected reauth_required"),
      (e: unknown) => e,
    );
    await waitFor(() => events.some((e) => e.type === "retrying"));
    const retry = events.find((e) => e.type === "retrying") as Extract<
      TokenkeeperEvent,
      { type: "retrying" }
    >;
    await clock.advance(retry.delayMs);
    const error = await pending;
    assert.ok(error instanceof ReauthRequiredError, String(error));
    assert.equal(bed.as.counters.refreshTokenReuse, 1);
    assert.equal(bed.as.counters.tokenRequests, 2, "one try, one retry, then stop");
  });

  it("never refreshes twice with a spent refresh token when the store fails to save the new one", async () => {
    // The store goes away between the server's answer and our write. The server has rotated:
    // the stored refresh token is spent. The next attempt must save the set we got, not refresh again.
    const flaky = new FlakyStore(store);
    const m = new TokenManager({ store: flaky, clock, random: () => 0.5, fetch: countingFetch });
    await clock.advance(HOUR + 1);
    flaky.failPuts = 100;
    let settled = false;
    const first = m.getAccessToken(name).then(
      () => assert.fail("the store is down"),
      (e: unknown) => e,
    );
    void first.finally(() => (settled = true));
    // Let the manager's own retries (saving, then refreshing again) run to their deadline.
    for (let i = 0; i < 100 && !settled; i++) {
      await waitFor(() => (inFlight === 0 && clock.pendingSleeps > 0) || settled);
      await clock.advance(2_000);
    }
    assert.equal(((await first) as { code?: string }).code, "store_unavailable");
    assert.equal(refreshGrants(), 1);
    flaky.failPuts = 0;
    await clock.advance(60_000); // past the failure's cool-down
    const token = await m.getAccessToken(name);
    assert.equal(refreshGrants(), 1, "the unsaved token set was saved, no second refresh");
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    const saved = await stored();
    assert.ok(saved.tokens!.accessToken.equals(token.token));
    assert.equal(saved.state.rotationCount, 1);
  });

  it("a 401 for a token the server no longer accepts triggers one refresh shared by all callers", async () => {
    const rejected = (await manager.getAccessToken(name)).token;
    const renewed = await Promise.all(
      Array.from({ length: 50 }, () => manager.refreshAfterRejection(name, rejected)),
    );
    assert.equal(refreshGrants(), 1);
    assert.ok(renewed.every((t) => !t.token.equals(rejected) && t.token.equals(renewed[0]!.token)));
  });

  it("measures clock skew from the server's Date header and warns beyond 30 s", async () => {
    bed.as.setClockOffset(90_000);
    try {
      const real = new TokenManager({ store, onEvent: (e) => events.push(e) });
      await real.refreshNow(name);
      const record = await stored();
      assert.ok(Math.abs(record.state.clockSkewMs! - 90_000) < 2_000, `skew ${record.state.clockSkewMs}`);
      assert.ok(events.some((e) => e.type === "skew_detected"));
      // A server ahead of us: expires_in (relative) is the earliest view; the skew takes nothing off.
      assert.ok(Math.abs(record.tokens!.expiresAt! - record.tokens!.obtainedAt - HOUR) < RESOLUTION);
    } finally {
      bed.as.setClockOffset(0);
    }
  });

  it("says which connector does not exist", async () => {
    await assert.rejects(manager.getAccessToken("missing"), NotFoundError);
  });

  it("never puts a token in an event", async () => {
    await clock.advance(HOUR + 1);
    await manager.getAccessToken(name);
    const record = await stored();
    const text = JSON.stringify(events);
    assert.ok(!text.includes(record.tokens!.accessToken.reveal()));
    assert.ok(!text.includes(record.tokens!.refreshToken!.reveal()));
  });
});

/** A store whose writes fail (as an unreachable network store would) while `failPuts` > 0. */
class FlakyStore extends MemoryStore {
  failPuts = 0;
  failedPuts = 0;
  constructor(private readonly inner: MemoryStore) {
    super();
  }
  override get(name: string) {
    return this.inner.get(name);
  }
  /** Runs before the next put reaches the inner store (e.g. another process's write). */
  beforePut:
    | ((record: Parameters<MemoryStore["put"]>[1], expected: number | null) => Promise<void>)
    | undefined;
  override async put(name: string, record: Parameters<MemoryStore["put"]>[1], expected: number | null) {
    await this.beforePut?.(record, expected);
    if (this.failPuts > 0) {
      this.failPuts--;
      this.failedPuts++;
      return Promise.reject(new StoreUnavailableError("store down (test)", { store: "flaky" }));
    }
    return this.inner.put(name, record, expected);
  }
  override lock(name: string, options: Parameters<MemoryStore["lock"]>[1]) {
    return this.inner.lock(name, options);
  }
}
