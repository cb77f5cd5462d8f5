/**
 * The preflight of a scheduled job (`tokenkeeper ensure`, and `run` before it starts anything):
 * can this connector produce tokens for the next `minTtlMs`? Yes only when
 *   - the connector exists and no human is already needed,
 *   - the refresh token's known absolute expiry (if any) lies beyond the run,
 *   - the refresh path works: proven by a refresh that succeeded recently (any process), or by
 *     refreshing now — a revoked grant is only discovered by using it, and 2 a.m. is too late,
 *   - the access token is fresh (refreshed now when it is not).
 * The answer is a skip record (skip-record.ts), never an exception.
 */

import { formatDuration } from "../core/duration.js";
import { EXIT, exitCodeFor, type TokenkeeperError } from "../core/errors.js";
import { assertConnectorName, type ConnectorRecord } from "../core/record.js";
import type { TokenManager } from "../manager/token-manager.js";
import { reauthAction, reauthError } from "../manager/transitions.js";
import {
  coversRun,
  DEFAULT_VIEW_POLICY,
  humanNeededFor,
  recordTimesOf,
  refreshProven,
  viewOf,
} from "../manager/view.js";
import {
  degradedRecord,
  READY_REASONS,
  type RecordTimes,
  readyRecord,
  type SkipRecord,
  skippedRecord,
} from "./skip-record.js";

export interface PreflightOptions {
  /** How long the job will run: tokens must be obtainable for at least this long (ms). */
  minTtlMs: number;
  /**
   * A refresh that succeeded this recently (by any process sharing the store) proves the refresh
   * path without another one. Default 10 s: jobs starting together refresh once, and a grant
   * revoked since then is still found out by nearly every run.
   */
  provenWithinMs?: number;
  signal?: AbortSignal;
}

export const DEFAULT_PROVEN_WITHIN_MS = 10_000;

export async function preflight(
  manager: TokenManager,
  name: string,
  options: PreflightOptions,
): Promise<SkipRecord> {
  const clock = manager.clock;
  const minTtlMs = Math.max(0, options.minTtlMs);
  const signal = options.signal ? { signal: options.signal } : {};

  let record: ConnectorRecord;
  try {
    assertConnectorName(name);
    record = await manager.record(name, { fresh: true });
  } catch (error) {
    return skippedRecord(name, error, { now: clock.now() });
  }
  const times = (r: ConnectorRecord): RecordTimes => recordTimesOf(r, clock.now());

  // 1-3. What the manager's view says before any network call: a human already needed, a
  // refresh token ending during the run, or no refresh token and a token that does not last.
  const now = clock.now();
  const view = manager.view(name) ?? viewOf(record, now, DEFAULT_VIEW_POLICY);
  const need = humanNeededFor(view, now, minTtlMs);
  if (need?.reason === "reauth_recorded") return skippedRecord(name, reauthError(need.reauth), times(record));
  if (need?.reason === "refresh_token_expired" || need?.reason === "refresh_token_expiring") {
    const rtExpiry = need.refreshTokenExpiresAt;
    const detail =
      need.reason === "refresh_token_expired"
        ? `the refresh token expired at ${new Date(rtExpiry).toISOString()}`
        : `the refresh token expires at ${new Date(rtExpiry).toISOString()}, ${formatDuration(rtExpiry - now)} from now, before the run ends (${formatDuration(minTtlMs)})`;
    return needsHuman(record, need.reason, detail, times(record));
  }
  if (need?.reason === "no_refresh_token") {
    return needsHuman(
      record,
      "no_refresh_token",
      "the server issued no refresh token and the access token does not last the run",
      times(record),
    );
  }
  // Refreshing would only record the connector as dead, which it is not while its token lasts.
  if (!view.canRefresh) {
    return readyRecord(
      name,
      READY_REASONS.fresh,
      `no refresh token, but the access token covers the run (${readyDetail(record, now, minTtlMs, false)})`,
      times(record),
    );
  }

  // 4. Prove the refresh path, unless a refresh succeeded moments ago.
  const proven = refreshProven(view, now, options.provenWithinMs ?? DEFAULT_PROVEN_WITHIN_MS);
  if (!proven) {
    try {
      await manager.refreshNow(name, signal);
      const after = await latest(manager, name, record);
      return readyRecord(
        name,
        READY_REASONS.refreshed,
        readyDetail(after, clock.now(), minTtlMs, true),
        times(after),
      );
    } catch (error) {
      return failureRecord(manager, name, record, error, minTtlMs);
    }
  }

  // 5. The refresh path is proven: make sure the access token itself is fresh.
  try {
    await manager.getAccessToken(name, { minTtlMs: manager.achievableMinTtlMs(name, minTtlMs), ...signal });
    const after = await latest(manager, name, record);
    const refreshed = after.tokens?.obtainedAt !== record.tokens?.obtainedAt;
    return readyRecord(
      name,
      refreshed ? READY_REASONS.refreshed : READY_REASONS.fresh,
      readyDetail(after, clock.now(), minTtlMs, refreshed),
      times(after),
    );
  } catch (error) {
    return failureRecord(manager, name, record, error, minTtlMs);
  }
}

/** Several connectors, checked concurrently (they share nothing but the store). Order is kept. */
export async function preflightAll(
  manager: TokenManager,
  names: readonly string[],
  options: PreflightOptions,
): Promise<SkipRecord[]> {
  return Promise.all(names.map((name) => preflight(manager, name, options)));
}

/**
 * A failed refresh: transient failures leave a usable connector `degraded` when its current token
 * covers the whole run, `skipped` (exit 75) otherwise; everything else is `skipped` with the
 * error's own exit code.
 */
async function failureRecord(
  manager: TokenManager,
  name: string,
  before: ConnectorRecord,
  error: unknown,
  minTtlMs: number,
): Promise<SkipRecord> {
  const current = await latest(manager, name, before);
  const now = manager.clock.now();
  const times = recordTimesOf(current, now);
  if (exitCodeFor(error) === EXIT.transient && coversRun(current, now, minTtlMs)) {
    return degradedRecord(name, error as TokenkeeperError, times);
  }
  return skippedRecord(name, error, times);
}

/** The record as the manager holds it now (after a refresh), without another store read. */
async function latest(
  manager: TokenManager,
  name: string,
  before: ConnectorRecord,
): Promise<ConnectorRecord> {
  return manager.record(name).catch(() => before);
}

/** A skip for a condition the preflight sees itself (nothing failed yet, so there is no error to convert). */
function needsHuman(record: ConnectorRecord, reason: string, detail: string, times: RecordTimes): SkipRecord {
  return {
    connector: record.name,
    status: "skipped",
    reason,
    expires_at: times.expiresAt == null ? null : new Date(times.expiresAt).toISOString(),
    refresh_token_expires_at:
      times.refreshTokenExpiresAt == null ? null : new Date(times.refreshTokenExpiresAt).toISOString(),
    detail,
    action: reauthAction(record.name, record.server.mcpUrl, record.grant, record.scope),
    code: "reauth_required",
    exit_code: EXIT.reauth,
    at: new Date(times.now).toISOString(),
  };
}

function readyDetail(record: ConnectorRecord, now: number, minTtlMs: number, refreshed: boolean): string {
  const t = record.tokens;
  const left = t?.expiresAt == null ? "no stated expiry" : `valid ${formatDuration(t.expiresAt - now)}`;
  const path = record.grant === "client_credentials" ? "client credentials" : "refresh token";
  const covers =
    record.tokens && coversRun(record, now, minTtlMs)
      ? "covers the run"
      : `renewed by ${path} during the run`;
  return `${refreshed ? "refreshed just now" : "refresh proven recently"}; access token ${left}, ${covers}`;
}
