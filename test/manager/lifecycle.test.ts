/**
 * The manager's lifecycle API for surfaces: the pure view (when a refresh is due, does the token
 * cover a run, is a human needed), the pure transitions (one reauth shape for record, error and
 * event), and the keeper, driven by a ManualClock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { ReauthRequiredError, TransientError } from "../../src/core/errors.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import { type KeeperReport, type KeeperSource, startKeeper } from "../../src/manager/keeper.js";
import { reauthErrorFromRecord } from "../../src/manager/reauth.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import {
  afterLogin,
  afterRefresh,
  claimNotice,
  enterReauth,
  type Reauth,
  reauthError,
  reauthEvent,
  reauthFromError,
  reauthFromEvent,
  reauthFromRecord,
  recordFailure,
  releaseNotice,
} from "../../src/manager/transitions.js";
import {
  achievableMinTtl,
  type ConnectorView,
  coversRun,
  coversView,
  humanNeededFor,
  refreshProven,
  viewOf,
} from "../../src/manager/view.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const policy = { refreshAheadMs: 5 * 60_000 };

describe("the connector view", () => {
  it("puts the refresh due at expiry minus the margin and the manager's window", () => {
    const view = viewOf(makeRecord("a"), T0, policy);
    // One-hour token: margin min(5 s, 6 min) = 5 s; window min(5 min, 30 min) = 5 min.
    assert.equal(view.refreshDueAt, T0 + HOUR - 5_000 - 5 * 60_000);
    assert.equal(view.refreshWindowMs, 5 * 60_000);
    assert.equal(view.canRefresh, true);
    assert.equal(view.reauth, null);
    // The manager's option is used, unless the connector has its own.
    assert.equal(
      viewOf(makeRecord("a"), T0, { refreshAheadMs: 60_000 }).refreshDueAt,
      T0 + HOUR - 5_000 - 60_000,
    );
    const own = makeRecord("a", { settings: { refreshAheadMs: 10 * 60_000 } });
    assert.equal(viewOf(own, T0, { refreshAheadMs: 60_000 }).refreshDueAt, T0 + HOUR - 5_000 - 10 * 60_000);
  });

  it("has nothing to schedule for an unknown expiry, and cannot refresh without a refresh token", () => {
    const unknown = viewOf(makeRecord("a", { tokens: makeTokens({ expiresAt: null }) }), T0, policy);
    assert.equal(unknown.refreshDueAt, null);
    assert.equal(coversView(unknown, T0, 10 * HOUR), true);
    const { refreshToken: _, ...noRt } = makeTokens();
    const stuck = viewOf(makeRecord("a", { tokens: noRt }), T0, policy);
    assert.equal(stuck.canRefresh, false);
    assert.equal(
      viewOf(makeRecord("a", { grant: "client_credentials", tokens: noRt }), T0, policy).canRefresh,
      true,
    );
  });

  it("says whether the token covers a run of N ms, past the expiry margin", () => {
    const record = makeRecord("a");
    const view = viewOf(record, T0, policy);
    assert.equal(coversView(view, T0, HOUR - 5_000), true);
    assert.equal(coversView(view, T0, HOUR - 4_999), false);
    assert.equal(coversRun(record, T0, HOUR - 5_000), true);
    assert.equal(coversView(viewOf(makeRecord("a", { tokens: null }), T0, policy), T0, 0), false);
  });

  it("caps a min-TTL the server cannot give with the same window", () => {
    const record = makeRecord("a");
    // Best a fresh one-hour token offers: 1 h - 5 s - 5 min; more is lowered to half of that.
    assert.equal(achievableMinTtl(record, 10 * 60_000, policy), 10 * 60_000);
    assert.equal(achievableMinTtl(record, 2 * HOUR, policy), Math.floor((HOUR - 5_000 - 5 * 60_000) / 2));
    assert.equal(achievableMinTtl(undefined, 2 * HOUR, policy), 2 * HOUR);
  });

  it("names the human's task from the record", () => {
    const dead = enterReauth(makeRecord("a"), reauthOfA(), T0 + 1, makeRecord("a"))!;
    const view = viewOf(dead, T0 + 2, policy);
    assert.equal(view.health, "reauth_required");
    assert.equal(view.reauth?.reason, "invalid_grant");
    assert.equal(view.reauth?.action, "run `tokenkeeper login https://mcp.example.test/mcp --name a`");
  });
});

describe("is a human needed for a run, and why", () => {
  it("names the reason from what the view shows, before any network call", () => {
    const now = T0 + 1_000;
    const ok = viewOf(makeRecord("a"), now, policy);
    assert.equal(humanNeededFor(ok, now, 2 * HOUR), null, "a refresh token renews past the access token");

    const ending = makeRecord("a", { tokens: makeTokens({ refreshTokenExpiresAt: T0 + HOUR }) });
    assert.deepEqual(humanNeededFor(viewOf(ending, now, policy), now, 2 * HOUR), {
      reason: "refresh_token_expiring",
      refreshTokenExpiresAt: T0 + HOUR,
    });
    assert.equal(humanNeededFor(viewOf(ending, now, policy), now, 10 * 60_000), null);
    assert.equal(
      humanNeededFor(viewOf(ending, T0 + HOUR + 1, policy), T0 + HOUR + 1, 0)?.reason,
      "refresh_token_expired",
    );

    const { refreshToken: _, ...noRt } = makeTokens();
    const single = viewOf(makeRecord("a", { tokens: noRt }), now, policy);
    assert.equal(humanNeededFor(single, now, 10 * 60_000), null, "the access token covers a short run");
    assert.deepEqual(humanNeededFor(single, now, 2 * HOUR), { reason: "no_refresh_token" });

    const dead = enterReauth(makeRecord("a"), reauthOfA(), T0, makeRecord("a"))!;
    assert.equal(humanNeededFor(viewOf(dead, now, policy), now, 0)?.reason, "reauth_recorded");
  });

  it("counts a refresh as proof of the refresh path only when it succeeded recently", () => {
    const record = makeRecord("a");
    const refreshed = {
      ...record,
      state: { ...record.state, lastRefreshAt: T0, lastRefreshOutcome: "ok" as const },
    };
    assert.equal(refreshProven(viewOf(refreshed, T0 + 10_000, policy), T0 + 10_000, 10_000), true);
    assert.equal(refreshProven(viewOf(refreshed, T0 + 10_001, policy), T0 + 10_001, 10_000), false);
    assert.equal(refreshProven(viewOf(record, T0, policy), T0, 10_000), false);
  });
});

function reauthOfA(overrides: Partial<Reauth> = {}): Reauth {
  return {
    connector: "a",
    reason: "invalid_grant",
    since: T0 + 1,
    action: "run `tokenkeeper login https://mcp.example.test/mcp --name a`",
    serverError: "invalid_grant",
    serverErrorDescription: "grant revoked",
    ...overrides,
  };
}

describe("the transitions", () => {
  it("one reauth shape round-trips through record, error and event", () => {
    const reauth = reauthOfA({ requiredScope: undefined });
    const record = enterReauth(makeRecord("a"), reauth, T0 + 1, makeRecord("a"))!;
    const fromRecord = reauthFromRecord(record)!;
    const error = reauthError(fromRecord);
    assert.ok(error instanceof ReauthRequiredError);
    const event = reauthEvent(reauthFromError(error), T0 + 2);
    assert.deepEqual(reauthFromEvent(event), fromRecord);
    assert.deepEqual(reauthFromError(reauthErrorFromRecord(record)!), fromRecord);
    assert.equal(event.at, T0 + 2);
    assert.equal(record.state.lastRefreshOutcome, "reauth_required");
    assert.deepEqual(record.state.lastError, {
      code: "reauth_required",
      at: T0 + 1,
      error: "invalid_grant",
      description: "grant revoked",
    });
  });

  it("does not mark a newer grant dead, nor the same reason twice; a step-up always lands", () => {
    const basis = makeRecord("a");
    const newer = makeRecord("a", {
      tokens: makeTokens({ refreshToken: new Secret("refresh-token-value-0002") }),
    });
    assert.equal(enterReauth(newer, reauthOfA(), T0, basis), null);
    assert.ok(
      enterReauth(newer, reauthOfA({ reason: "insufficient_scope", requiredScope: "admin" }), T0, basis),
    );
    const dead = enterReauth(basis, reauthOfA(), T0, basis)!;
    assert.equal(enterReauth(dead, reauthOfA(), T0 + 5, basis), null);
  });

  it("a transient failure degrades a healthy connector and keeps a dead one dead", () => {
    const error = new TransientError("token endpoint answered 503", { status: 503 });
    const degraded = recordFailure(makeRecord("a"), error, T0 + 9);
    assert.equal(degraded.state.health, "degraded");
    assert.deepEqual(degraded.state.lastError, { code: "transient", description: error.message, at: T0 + 9 });
    const dead = enterReauth(makeRecord("a"), reauthOfA(), T0, makeRecord("a"))!;
    assert.equal(recordFailure(dead, error, T0 + 9).state.health, "reauth_required");
  });
});

describe("the transitions after a login and around a notification", () => {
  it("a new login clears the reauth state and its notification mark, and counts a rotation", () => {
    const dead = { ...enterReauth(makeRecord("a"), reauthOfA(), T0, makeRecord("a"))!, updatedAt: T0 };
    const marked = claimNotice(dead, "notifiedAt", T0 + 1);
    const tokens = makeTokens({ refreshToken: new Secret("refresh-token-value-0002") }, T0 + 2);
    const back = afterLogin(marked, { tokens, rotated: true }, T0 + 2);
    assert.equal(back.state.health, "ok");
    assert.equal(back.state.reauth, undefined);
    assert.equal(back.state.notifiedAt, undefined);
    assert.equal(back.state.lastError, undefined);
    assert.equal(back.state.rotationCount, marked.state.rotationCount + 1);
    assert.equal(back.tokens, tokens);
    assert.equal(viewOf(back, T0 + 3, policy).reauth, null);
  });

  it("a refresh clears the reauth state, error and notification mark, and counts itself", () => {
    const dead = claimNotice(
      enterReauth(makeRecord("a"), reauthOfA(), T0, makeRecord("a"))!,
      "notifiedAt",
      T0 + 1,
    );
    const tokens = makeTokens({ refreshToken: new Secret("refresh-token-value-0003") }, T0 + 2);
    const back = afterRefresh(dead, { tokens, rotated: true, skewMs: 1_500 }, T0 + 2);
    assert.equal(back.state.health, "ok");
    assert.equal(back.state.lastRefreshOutcome, "ok");
    assert.equal(back.state.lastRefreshAt, T0 + 2);
    assert.equal(back.state.reauth, undefined);
    assert.equal(back.state.lastError, undefined);
    assert.equal(back.state.notifiedAt, undefined);
    assert.equal(back.state.refreshCount, dead.state.refreshCount + 1);
    assert.equal(back.state.rotationCount, dead.state.rotationCount + 1);
    assert.equal(back.state.clockSkewMs, 1_500);
    assert.equal(back.state.clockSkewMeasuredAt, T0 + 2);
    assert.equal(back.tokens, tokens);
    assert.equal(back.updatedAt, T0 + 2);
    // No measurement: the last one stands.
    const again = afterRefresh(back, { tokens, rotated: false }, T0 + 3);
    assert.equal(again.state.rotationCount, back.state.rotationCount);
    assert.equal(again.state.clockSkewMeasuredAt, T0 + 2);
  });

  it("a notification claim is given back only while it is still ours", () => {
    const claimed = claimNotice(makeRecord("a"), "expiryWarnedAt", T0 + 1);
    assert.equal(claimed.state.expiryWarnedAt, T0 + 1);
    assert.equal(releaseNotice(claimed, "expiryWarnedAt", T0 + 1)?.state.expiryWarnedAt, undefined);
    const theirs = claimNotice(claimed, "expiryWarnedAt", T0 + 2);
    assert.equal(releaseNotice(theirs, "expiryWarnedAt", T0 + 1), null);
  });
});

/** A token source on a ManualClock: refreshes succeed, fail transiently, or find the grant dead, as scripted. */
class ScriptedSource implements KeeperSource {
  readonly clock = new ManualClock(T0);
  record: ConnectorRecord = makeRecord("a", {}, T0);
  refreshes: number[] = [];
  outcome: "ok" | "transient" | "reauth" = "ok";
  lastSignal: AbortSignal | undefined;
  /** When set, a refresh waits for this promise (to test stop() during a refresh). */
  hold: Promise<void> | undefined;

  view(): ConnectorView {
    return viewOf(this.record, this.clock.now(), policy);
  }
  currentToken(): Secret | undefined {
    return this.record.tokens?.accessToken;
  }
  async getAccessToken(): Promise<unknown> {
    return this.record.tokens;
  }
  async refreshAfterRejection(
    _c: string,
    current: Secret,
    options: { signal?: AbortSignal } = {},
  ): Promise<unknown> {
    this.lastSignal = options.signal;
    if (this.hold) await this.hold;
    options.signal?.throwIfAborted();
    if (!this.record.tokens?.accessToken.equals(current)) return this.record.tokens;
    this.refreshes.push(this.clock.now());
    if (this.outcome === "transient") throw new TransientError("503", { status: 503 });
    if (this.outcome === "reauth") throw reauthError(reauthOfA());
    this.issue();
    return this.record.tokens;
  }
  /** A new one-hour token, as a refresh (here or in another process) would store. */
  issue(): void {
    const now = this.clock.now();
    this.record = {
      ...this.record,
      tokens: makeTokens({
        accessToken: new Secret(`access-${now}`),
        obtainedAt: now,
        expiresAt: now + HOUR,
      }),
    };
  }
}

const DUE = HOUR - 5_000 - 5 * 60_000;

describe("the keeper", () => {
  it("refreshes when the token enters its window, never before, and then schedules the next", async () => {
    const source = new ScriptedSource();
    const keeper = startKeeper(source, "a");
    await source.clock.advance(DUE - 1);
    assert.deepEqual(source.refreshes, []);
    await source.clock.advance(1);
    assert.deepEqual(source.refreshes, [T0 + DUE]);
    await source.clock.advance(DUE);
    assert.deepEqual(source.refreshes, [T0 + DUE, T0 + 2 * DUE]);
    assert.equal(await keeper.stop(), "stopped");
  });

  it("does not refresh a token someone else already renewed; a wait is at most maxSleepMs", async () => {
    const source = new ScriptedSource();
    const keeper = startKeeper(source, "a", { maxSleepMs: 60_000 });
    await source.clock.advance(DUE - 30_000);
    source.issue(); // another process refreshed
    await source.clock.advance(30_000);
    assert.deepEqual(source.refreshes, []);
    assert.ok(source.clock.pendingSleeps === 1);
    await source.clock.advance(DUE);
    assert.equal(source.refreshes.length, 1);
    await keeper.stop();
  });

  it("backs off while failures last, reports each change of verdict once, then recovery", async () => {
    const source = new ScriptedSource();
    const reports: KeeperReport["kind"][] = [];
    const usable: boolean[] = [];
    source.outcome = "transient";
    const keeper = startKeeper(source, "a", {
      onReport: (r) => {
        reports.push(r.kind);
        if (r.kind === "failing") usable.push(r.usable);
      },
    });
    await source.clock.advance(DUE + 1_000 + 2_000 + 4_000);
    assert.deepEqual(
      source.refreshes.map((t) => t - T0 - DUE),
      [0, 1_000, 3_000, 7_000],
    );
    assert.deepEqual(reports, ["failing"]);
    assert.deepEqual(usable, [true]);
    source.outcome = "ok";
    await source.clock.advance(8_000);
    assert.deepEqual(reports, ["failing", "recovered"]);
    assert.equal(source.refreshes.length, 5);
    await keeper.stop();
  });

  it("says when the failing token is no longer usable", async () => {
    const source = new ScriptedSource();
    const usable: boolean[] = [];
    source.outcome = "transient";
    const keeper = startKeeper(source, "a", {
      backoff: { maxMs: 60_000 },
      onReport: (r) => r.kind === "failing" && usable.push(r.usable),
    });
    await source.clock.advance(HOUR);
    assert.deepEqual(usable, [true, false]);
    await keeper.stop();
  });

  it("ends when a human is needed, with the typed error", async () => {
    const source = new ScriptedSource();
    source.outcome = "reauth";
    const reports: KeeperReport[] = [];
    const keeper = startKeeper(source, "a", { onReport: (r) => reports.push(r) });
    await source.clock.advance(DUE);
    assert.equal(await keeper.done, "reauth");
    assert.equal(reports.length, 1);
    assert.equal(reports[0]?.kind, "reauth");
    assert.equal(source.clock.pendingSleeps, 0);
  });

  it("keeps fresh only while wanted: an unused connector ends idle without a refresh", async () => {
    const source = new ScriptedSource();
    let used = true;
    const keeper = startKeeper(source, "a", { wanted: () => used });
    await source.clock.advance(DUE);
    assert.equal(source.refreshes.length, 1);
    used = false;
    await source.clock.advance(DUE);
    assert.equal(await keeper.done, "idle");
    assert.equal(source.refreshes.length, 1);
  });

  it("never refreshes a connector that cannot refresh without a human", async () => {
    const source = new ScriptedSource();
    const { refreshToken: _, ...noRt } = makeTokens({}, T0);
    source.record = { ...source.record, tokens: noRt };
    const keeper = startKeeper(source, "a");
    await source.clock.advance(2 * HOUR);
    assert.deepEqual(source.refreshes, []);
    await keeper.stop();
  });

  it("stops at once, in a sleep or in a refresh, and aborts the refresh it waits for", async () => {
    const sleeping = new ScriptedSource();
    const k1 = startKeeper(sleeping, "a");
    await sleeping.clock.advance(1_000);
    assert.equal(await k1.stop(), "stopped");
    assert.equal(sleeping.clock.pendingSleeps, 0);

    const refreshing = new ScriptedSource();
    let release!: () => void;
    refreshing.hold = new Promise((r) => {
      release = r;
    });
    const outer = new AbortController();
    const k2 = startKeeper(refreshing, "a", { signal: outer.signal });
    await refreshing.clock.advance(DUE);
    assert.equal(refreshing.lastSignal?.aborted, false);
    outer.abort();
    assert.equal(refreshing.lastSignal?.aborted, true);
    release();
    assert.equal(await k2.done, "stopped");
    assert.deepEqual(refreshing.refreshes, []);
  });
});

describe("the manager's lifecycle methods", () => {
  it("views a connector with the manager's own refresh-ahead option", async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    await store.put("a", makeRecord("a", {}, T0), null);
    const manager = new TokenManager({ store, clock, refreshAheadMs: 60_000 });
    assert.equal(manager.view("a"), undefined, "no I/O before first use");
    const looked = await manager.look("a");
    assert.equal(looked.refreshDueAt, T0 + HOUR - 5_000 - 60_000);
    assert.deepEqual(manager.view("a"), looked);
    assert.equal((await manager.record("a")).name, "a");
    assert.equal(manager.achievableMinTtlMs("a", 2 * HOUR), Math.floor((HOUR - 5_000 - 60_000) / 2));
    await manager.close();
  });

  it("claims a notification for one of several managers on a store, and gives back only its own claim", async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    await store.put("a", makeRecord("a", {}, T0), null);
    const managers = Array.from({ length: 4 }, () => new TokenManager({ store, clock }));
    const unmarked = (r: ConnectorRecord) => r.state.notifiedAt === undefined;
    const claims = await Promise.all(
      managers.map((m, i) => m.claimNotice("a", "notifiedAt", T0 + i, unmarked)),
    );
    assert.equal(claims.filter(Boolean).length, 1, claims.join(","));
    const winner = claims.indexOf(true);
    assert.equal((await store.get("a"))?.record.state.notifiedAt, T0 + winner);
    // The winner's manager sees its own mark without another read.
    assert.equal((await managers[winner]!.record("a")).state.notifiedAt, T0 + winner);
    // A claim that is not ours is left alone; ours is given back.
    await managers[0]!.releaseNotice("a", "notifiedAt", T0 + winner + 100);
    assert.equal((await store.get("a"))?.record.state.notifiedAt, T0 + winner);
    await managers[0]!.releaseNotice("a", "notifiedAt", T0 + winner);
    assert.equal((await store.get("a"))?.record.state.notifiedAt, undefined);
    assert.equal(await managers[1]!.claimNotice("a", "expiryWarnedAt", T0, () => false), false);
    assert.equal((await store.get("a"))?.record.state.expiryWarnedAt, undefined);
    await Promise.all(managers.map((m) => m.close()));
  });
});
