/**
 * The connector's state transitions, pure: what the record becomes when a human is needed or a
 * refresh fails, and the one "reauth" shape that the record, the typed error and the event all
 * carry. The token manager applies them (compare-and-set in the store); surfaces only translate
 * the shape into skip records, JSON-RPC errors and exit codes. No I/O, time is a parameter.
 */
import { type ReauthReason, ReauthRequiredError, type TokenkeeperError } from "../core/errors.js";
import type { ClientRegistration, ConnectorRecord, ConnectorSettings, TokenSet } from "../core/record.js";
import type { TokenkeeperEvent } from "./events.js";

/** The command a human runs to fix a connector (part of the reauth shape). */
export { reauthAction } from "./refresh-policy.js";

/** Why a human must act on a connector, and since when: one shape for record, error and event. */
export interface Reauth {
  connector: string;
  reason: ReauthReason;
  since: number;
  /** What a human must do, as a command line when possible. */
  action: string;
  /** The OAuth `error` the server returned, when there was one. */
  serverError?: string;
  /** The server's `error_description`, scrubbed and truncated (ReauthRequiredError does it). */
  serverErrorDescription?: string;
  /** For step-up: the scope the resource server asked for. */
  requiredScope?: string;
}

export type ReauthEvent = Extract<TokenkeeperEvent, { type: "reauth_required" }>;

/** The optional server details, only those present (records and events never hold `undefined`). */
function details(r: Omit<Reauth, "connector" | "reason" | "since" | "action">) {
  return {
    ...(r.serverError ? { serverError: r.serverError } : {}),
    ...(r.serverErrorDescription ? { serverErrorDescription: r.serverErrorDescription } : {}),
    ...(r.requiredScope ? { requiredScope: r.requiredScope } : {}),
  };
}

export function reauthOf(fields: Reauth): Reauth {
  return {
    connector: fields.connector,
    reason: fields.reason,
    since: fields.since,
    action: fields.action,
    ...details(fields),
  };
}

/** The reauth state a record carries, or null when no human is needed. */
export function reauthFromRecord(record: ConnectorRecord): Reauth | null {
  const reauth = record.state.reauth;
  if (record.state.health !== "reauth_required" || !reauth) return null;
  return reauthOf({ ...reauth, connector: record.name, reason: reauth.reason as ReauthReason });
}

export function reauthFromEvent(event: ReauthEvent): Reauth {
  return reauthOf({ ...event, reason: event.reason as ReauthReason });
}

export function reauthFromError(error: ReauthRequiredError): Reauth {
  return reauthOf(error.fields);
}

export function reauthError(reauth: Reauth, options?: { cause?: unknown }): ReauthRequiredError {
  return new ReauthRequiredError({ ...reauthOf(reauth) }, options);
}

export function reauthEvent(reauth: Reauth, at: number): ReauthEvent {
  return {
    type: "reauth_required",
    connector: reauth.connector,
    at,
    reason: reauth.reason,
    action: reauth.action,
    since: reauth.since,
    ...details(reauth),
  };
}

/**
 * The record once a human is needed, or null when there is nothing to change: the same reason is
 * already recorded, or a newer login or refresh landed since the refresh that failed (`basis`
 * is the record that refresh started from; a step-up is recorded whatever the tokens).
 */
export function enterReauth(
  current: ConnectorRecord,
  reauth: Reauth,
  now: number,
  basis: ConnectorRecord,
): ConnectorRecord | null {
  if (current.state.health === "reauth_required" && current.state.reauth?.reason === reauth.reason)
    return null;
  if (!sameGrant(current, basis) && reauth.reason !== "insufficient_scope") return null;
  const extra = details(reauth);
  return {
    ...current,
    state: {
      ...current.state,
      health: "reauth_required",
      lastRefreshAt: now,
      lastRefreshOutcome: "reauth_required",
      lastError: {
        code: "reauth_required",
        at: now,
        ...(extra.serverError ? { error: extra.serverError } : {}),
        ...(extra.serverErrorDescription ? { description: extra.serverErrorDescription } : {}),
      },
      reauth: { reason: reauth.reason, since: reauth.since, action: reauth.action, ...extra },
    },
    updatedAt: now,
  };
}

/** The record after a refresh failed for a reason that may pass (the connector is degraded, not dead). */
export function recordFailure(
  current: ConnectorRecord,
  error: TokenkeeperError,
  now: number,
): ConnectorRecord {
  return {
    ...current,
    state: {
      ...current.state,
      health: current.state.health === "reauth_required" ? "reauth_required" : "degraded",
      lastRefreshAt: now,
      lastRefreshOutcome: "transient_error",
      lastError: { code: error.code, description: error.message.slice(0, 300), at: now },
    },
    updatedAt: now,
  };
}

/** Do two records hold the same grant (the same refresh token, or the same access token without one)? */
export function sameGrant(a: ConnectorRecord, b: ConnectorRecord): boolean {
  return sameRefreshToken(a.tokens, b.tokens);
}

/** The same, for two token sets (absent ones included). */
export function sameRefreshToken(x: TokenSet | null | undefined, y: TokenSet | null | undefined): boolean {
  if (!x?.refreshToken || !y?.refreshToken)
    return !x?.refreshToken && !y?.refreshToken && x?.accessToken.equals(y?.accessToken) === true;
  return x.refreshToken.equals(y.refreshToken);
}

/** What a refresh produced: the new tokens, whether the refresh token rotated, the clock skew measured. */
export interface Refreshed {
  tokens: TokenSet;
  rotated: boolean;
  /** The authorization server's clock minus ours (ms), when the response allowed measuring it. */
  skewMs?: number;
}

/** The record after a refresh succeeded: healthy, counted, the reauth state, last error and notification mark cleared. */
export function afterRefresh(current: ConnectorRecord, refreshed: Refreshed, now: number): ConnectorRecord {
  const state = {
    ...current.state,
    health: "ok" as const,
    lastRefreshAt: now,
    lastRefreshOutcome: "ok" as const,
    refreshCount: current.state.refreshCount + 1,
    rotationCount: current.state.rotationCount + (refreshed.rotated ? 1 : 0),
    ...(refreshed.skewMs !== undefined ? { clockSkewMs: refreshed.skewMs, clockSkewMeasuredAt: now } : {}),
  };
  delete state.lastError;
  delete state.reauth;
  delete state.notifiedAt;
  return { ...current, tokens: refreshed.tokens, state, updatedAt: now };
}

/** What a login produced: the new tokens, whether the refresh token changed, and a new client if one was registered. */
export interface NewLogin {
  tokens: TokenSet;
  rotated: boolean;
  client?: ClientRegistration;
}

/** The record after a human logged in again: healthy, the reauth state and its notification cleared. */
export function afterLogin(current: ConnectorRecord, login: NewLogin, now: number): ConnectorRecord {
  const state = {
    ...current.state,
    health: "ok" as const,
    rotationCount: current.state.rotationCount + (login.rotated ? 1 : 0),
  };
  delete state.reauth;
  delete state.notifiedAt;
  delete state.lastError;
  return {
    ...current,
    ...(login.client ? { client: login.client } : {}),
    tokens: login.tokens,
    state,
    updatedAt: now,
  };
}

/**
 * A login's record (`fresh`) laid over what the store holds now. The person may spend minutes in
 * the browser while other processes keep writing the connector (a keepalive refreshing the old
 * grant, a notifier marking state), so a login never simply replaces the record:
 *
 *   - the login's own results win: server, client, scope, grant, tokens, and a fresh health state
 *     (the new grant is healthy; a reauth mark or notification stamp of the old grant is over);
 *   - what is not the login's to decide is kept from the current record: settings (someone may
 *     have changed them meanwhile), history counters (refreshes of the old grant happened), the
 *     creation time, and a clock-skew measurement when the login made none.
 */
export function mergeLogin(fresh: ConnectorRecord, current: ConnectorRecord | null): ConnectorRecord {
  if (!current) return fresh;
  const skew =
    fresh.state.clockSkewMs === undefined && current.state.clockSkewMs !== undefined
      ? {
          clockSkewMs: current.state.clockSkewMs,
          ...(current.state.clockSkewMeasuredAt !== undefined
            ? { clockSkewMeasuredAt: current.state.clockSkewMeasuredAt }
            : {}),
        }
      : {};
  return {
    ...fresh,
    state: {
      ...fresh.state,
      refreshCount: Math.max(fresh.state.refreshCount, current.state.refreshCount),
      rotationCount: Math.max(fresh.state.rotationCount, current.state.rotationCount),
      ...skew,
    },
    settings: current.settings,
    createdAt: current.createdAt,
  };
}

/**
 * The record with its settings changed (`tokenkeeper config`): tokens and state stay as the
 * current record has them, so a change applied onto the latest record never rolls back a
 * rotation that happened meanwhile.
 */
export function withSettings(
  current: ConnectorRecord,
  change: (settings: ConnectorSettings) => ConnectorSettings,
  now: number,
): ConnectorRecord {
  return { ...current, settings: change(current.settings), updatedAt: now };
}

/** The record fields that mark a notification as sent, once per occasion. */
export type NoticeField = "notifiedAt" | "expiryWarnedAt";

/** The record with a notification claimed at `at` (the compare-and-set that wins sends it). */
export function claimNotice(current: ConnectorRecord, field: NoticeField, at: number): ConnectorRecord {
  return { ...current, state: { ...current.state, [field]: at } };
}

/** The record with our claim given back (every channel failed), or null when the claim is no longer ours. */
export function releaseNotice(
  current: ConnectorRecord,
  field: NoticeField,
  at: number,
): ConnectorRecord | null {
  if (current.state[field] !== at) return null;
  const state = { ...current.state };
  delete state[field];
  return { ...current, state };
}
