/**
 * A pure view of one connector: when its next refresh is due, whether its token covers a run of
 * N ms, whether a human is needed and why. Computed from the record and the manager's own
 * options (TokenManager.view), so every surface sees the same refresh-ahead window and expiry
 * margin instead of re-deriving them. No I/O, time is a parameter.
 */
import type { ConnectorRecord, Health, TokenSet } from "../core/record.js";
import {
  achievableMinTtlMs,
  DEFAULT_REFRESH_AHEAD_MS,
  expiryMarginMs,
  type Freshness,
  freshness,
  refreshWindowMs,
} from "./refresh-policy.js";
import { type Reauth, reauthFromRecord } from "./transitions.js";

export interface ViewPolicy {
  /** The manager's refresh-ahead bound; a connector's own setting wins. */
  refreshAheadMs: number;
}

/** The policy of a TokenManager created without options (what the CLI's manager uses). */
export const DEFAULT_VIEW_POLICY: ViewPolicy = { refreshAheadMs: DEFAULT_REFRESH_AHEAD_MS };

export interface ConnectorView {
  connector: string;
  /** The MCP server the connector is for. */
  mcpUrl: string;
  grant: ConnectorRecord["grant"];
  /** The scope granted with the current token, else the scope requested at login. */
  scope: string | undefined;
  /** The time the view was computed for (epoch ms). */
  now: number;
  health: Health;
  /** When the access token expires (epoch ms); null when there is none or the server gave no lifetime. */
  expiresAt: number | null;
  /** When the current token was obtained; null without a token. */
  obtainedAt: number | null;
  /** The refresh token's known absolute expiry (server-stated, or the configured lifetime); null when unknown. */
  refreshTokenExpiresAt: number | null;
  hasToken: boolean;
  /** Whether tokens can be renewed without a human (a refresh token, or client credentials). */
  canRefresh: boolean;
  /**
   * When the next refresh is due: the token enters its refresh-ahead window (expiry minus the
   * expiry margin and the window). null when there is no token or its expiry is unknown (nothing
   * to schedule: a 401 says when it ends).
   */
  refreshDueAt: number | null;
  /** The connector's refresh-ahead window for its current token (ms). */
  refreshWindowMs: number;
  /** A token this close to expiry counts as expired (ms; see expiryMarginMs). */
  expiryMarginMs: number;
  /** Set when a human must act (the record says so). */
  reauth: Reauth | null;
  /** When the last refresh (any process) succeeded, if that was the last outcome. */
  lastGoodRefreshAt: number | null;
}

/** The refresh token's known absolute expiry: what the server said, or the lifetime configured for the connector. */
export function refreshTokenExpiry(record: ConnectorRecord): number | null {
  const t = record.tokens;
  if (!t?.refreshToken) return null;
  if (typeof t.refreshTokenExpiresAt === "number") return t.refreshTokenExpiresAt;
  const lifetime = record.settings.refreshTokenLifetimeMs;
  if (lifetime === undefined) return null;
  return (t.refreshTokenIssuedAt ?? t.obtainedAt) + lifetime;
}

/** The refresh-ahead bound for this record under `policy`. */
export function aheadMsFor(record: ConnectorRecord, policy: ViewPolicy): number {
  return record.settings.refreshAheadMs ?? policy.refreshAheadMs;
}

export function viewOf(record: ConnectorRecord, now: number, policy: ViewPolicy): ConnectorView {
  const t = record.tokens;
  const window = t ? refreshWindowMs(t, aheadMsFor(record, policy)) : 0;
  const s = record.state;
  return {
    connector: record.name,
    mcpUrl: record.server.mcpUrl,
    grant: record.grant,
    scope: t?.scope ?? record.scope,
    now,
    health: s.health,
    expiresAt: t?.expiresAt ?? null,
    obtainedAt: t?.obtainedAt ?? null,
    refreshTokenExpiresAt: refreshTokenExpiry(record),
    hasToken: Boolean(t),
    canRefresh: record.grant === "client_credentials" || Boolean(t?.refreshToken),
    refreshDueAt: t && t.expiresAt !== null ? t.expiresAt - expiryMarginMs(t) - window : null,
    refreshWindowMs: window,
    expiryMarginMs: t ? expiryMarginMs(t) : 0,
    reauth: reauthFromRecord(record),
    lastGoodRefreshAt:
      s.health === "ok" && s.lastRefreshOutcome === "ok" && s.lastRefreshAt !== undefined
        ? s.lastRefreshAt
        : null,
  };
}

/**
 * Does the access token stay valid for `runMs` from `now` (past the expiry margin)? An unknown
 * expiry counts as yes; no token as no.
 */
export function coversRun(record: ConnectorRecord, now: number, runMs: number): boolean {
  const t = record.tokens;
  return coversView(
    { hasToken: Boolean(t), expiresAt: t?.expiresAt ?? null, expiryMarginMs: t ? expiryMarginMs(t) : 0 },
    now,
    runMs,
  );
}

/** coversRun, for a view: does its access token stay valid for `runMs` from `now`? */
export function coversView(
  view: Pick<ConnectorView, "hasToken" | "expiresAt" | "expiryMarginMs">,
  now: number,
  runMs: number,
): boolean {
  if (!view.hasToken) return false;
  if (view.expiresAt === null) return true;
  return view.expiresAt - view.expiryMarginMs - now >= runMs;
}

/** Why a run needs a human before any network call is made; see humanNeededFor. */
export type HumanNeed =
  /** The record already says so (a refresh met a dead grant, a step-up was refused). */
  | { reason: "reauth_recorded"; reauth: Reauth }
  /** The refresh token's known absolute expiry falls before the run ends (or has passed). */
  | { reason: "refresh_token_expired" | "refresh_token_expiring"; refreshTokenExpiresAt: number }
  /** No way to renew (no refresh token) and the access token does not last the run. */
  | { reason: "no_refresh_token" };

/**
 * Is a human needed for a run of `runMs` from `now`, and why? Only what the view shows without
 * asking the server: a revoked grant is found out by refreshing (the manager does that).
 */
export function humanNeededFor(view: ConnectorView, now: number, runMs: number): HumanNeed | null {
  if (view.reauth) return { reason: "reauth_recorded", reauth: view.reauth };
  const rt = view.refreshTokenExpiresAt;
  // A refresh token cannot be refreshed past its absolute end.
  if (view.grant !== "client_credentials" && rt !== null && rt < now + runMs) {
    return {
      reason: rt <= now ? "refresh_token_expired" : "refresh_token_expiring",
      refreshTokenExpiresAt: rt,
    };
  }
  if (!view.canRefresh && !coversView(view, now, runMs)) return { reason: "no_refresh_token" };
  return null;
}

/** Did a refresh (by any process sharing the store) succeed within `withinMs` of `now`? */
export function refreshProven(view: ConnectorView, now: number, withinMs: number): boolean {
  return view.lastGoodRefreshAt !== null && now - view.lastGoodRefreshAt <= withinMs;
}

/** The times a skip record carries, from a record. */
export function recordTimesOf(record: ConnectorRecord, now: number) {
  return {
    now,
    expiresAt: record.tokens?.expiresAt ?? null,
    refreshTokenExpiresAt: refreshTokenExpiry(record),
  };
}

/** The times a skip record carries, from a view. */
export function recordTimes(view: ConnectorView | undefined, now: number) {
  return {
    now,
    expiresAt: view?.expiresAt ?? null,
    refreshTokenExpiresAt: view?.refreshTokenExpiresAt ?? null,
  };
}

/**
 * The min-TTL the server can satisfy for this record (see achievableMinTtlMs), with the
 * connector's refresh-ahead window under `policy`: the one place a caller's min-TTL is capped.
 */
export function achievableMinTtl(
  record: ConnectorRecord | undefined,
  minTtlMs: number,
  policy: ViewPolicy,
): number {
  return achievableMinTtlMs(
    record?.tokens,
    minTtlMs,
    record ? aheadMsFor(record, policy) : policy.refreshAheadMs,
  );
}

/**
 * The decision getAccessToken makes for a caller needing `minTtlMs` (already capped with
 * achievableMinTtl): "fresh" is handed out as is; "usable" is handed out while a refresh runs;
 * "stale" waits for one. A process that has not loaded a manager (a one-shot CLI command) asks
 * here, so it decides exactly as the manager would.
 */
export function freshnessOf(
  record: ConnectorRecord | undefined,
  now: number,
  minTtlMs: number,
  policy: ViewPolicy,
): Freshness {
  return record ? freshness(record.tokens, now, minTtlMs, aheadMsFor(record, policy)) : "stale";
}

/**
 * The stored token set a one-shot command may print without loading a manager: fresh for
 * `minTtlMs` (already capped with achievableMinTtl) by the manager's own decision, of a grant not
 * known to be dead. Null when the manager has to decide (a refresh due, a verdict to report).
 */
export function freshStoredTokens(
  record: ConnectorRecord | undefined,
  now: number,
  minTtlMs: number,
  policy: ViewPolicy,
): TokenSet | null {
  if (!record?.tokens || record.state.health === "reauth_required") return null;
  return freshnessOf(record, now, minTtlMs, policy) === "fresh" ? record.tokens : null;
}
