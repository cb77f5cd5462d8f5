/**
 * Keepalive: the chores that keep connectors usable between scheduled jobs.
 *   - Refresh connectors that sit idle: many providers let a refresh token lapse after a period
 *     of disuse (sliding expiry). Using it resets the clock; a connector whose tokens were last
 *     obtained `idleMs` ago is refreshed.
 *   - Warn ahead of a refresh token's known absolute expiry (default 3 days), so a human can
 *     re-authorize at a convenient time rather than when the 2 a.m. job fails. Once per expiry.
 *   - Make sure a connector that needs a human has been announced (a notification that failed
 *     earlier is retried here).
 * One pass (`keepaliveOnce`) for cron and systemd timers; `runKeepalive` repeats it as a service.
 */

import { formatDuration } from "../core/duration.js";
import { EXIT, exitCodeFor, type TokenkeeperError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { reauthErrorFromRecord } from "../manager/reauth.js";
import type { TokenManager } from "../manager/token-manager.js";
import { reauthAction } from "../manager/transitions.js";
import { coversRun, recordTimesOf, refreshTokenExpiry } from "../manager/view.js";
import type { Notifier } from "./notify.js";
import { degradedRecord, READY_REASONS, readyRecord, type SkipRecord, skippedRecord } from "./skip-record.js";

export const DEFAULT_IDLE_MS = 24 * 3_600_000;
export const DEFAULT_WARN_BEFORE_MS = 3 * 24 * 3_600_000;
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 3_600_000;

export interface KeepaliveOptions {
  /** Refresh a connector whose tokens were last obtained at least this long ago (default 1 day). */
  idleMs?: number;
  /** Warn this long before a refresh token's known absolute expiry (default 3 days). */
  warnBeforeMs?: number;
  notifier?: Notifier;
  signal?: AbortSignal;
}

export async function keepaliveConnector(
  manager: TokenManager,
  name: string,
  options: KeepaliveOptions = {},
): Promise<SkipRecord> {
  const clock = manager.clock;
  const idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  const warnBeforeMs = options.warnBeforeMs ?? DEFAULT_WARN_BEFORE_MS;

  let record: ConnectorRecord;
  try {
    record = await manager.record(name, { fresh: true });
  } catch (error) {
    return skippedRecord(name, error, { now: clock.now() });
  }

  const dead = reauthErrorFromRecord(record);
  if (dead) {
    // Announced once per transition; this retries one whose notification never got through.
    await options.notifier?.notifyReauth(manager, name).catch(() => {});
    return skippedRecord(name, dead, recordTimesOf(record, clock.now()));
  }

  const now = clock.now();
  const rtExpiry = refreshTokenExpiry(record);
  const lastObtained = record.tokens?.obtainedAt;
  // An expired refresh token is refreshed anyway: the server's answer (invalid_grant) is what
  // records the connector as needing a human, and announces it.
  const due =
    lastObtained === undefined || now - lastObtained >= idleMs || (rtExpiry !== null && rtExpiry <= now);
  let refreshed = false;
  if (due) {
    try {
      await manager.refreshNow(name, options.signal ? { signal: options.signal } : {});
      refreshed = true;
    } catch (error) {
      const current = await manager.record(name).catch(() => record);
      const at = clock.now();
      if (exitCodeFor(error) === EXIT.reauth) {
        await options.notifier?.notifyReauth(manager, name).catch(() => {});
        return skippedRecord(name, error, recordTimesOf(current, at));
      }
      if (exitCodeFor(error) === EXIT.transient && coversRun(current, at, 0)) {
        return degradedRecord(name, error as TokenkeeperError, recordTimesOf(current, at));
      }
      return skippedRecord(name, error, recordTimesOf(current, at));
    }
  }

  const latest = await manager.record(name).catch(() => record);
  const at = clock.now();
  const expiry = refreshTokenExpiry(latest);
  if (latest.grant !== "client_credentials" && expiry !== null && expiry - at <= warnBeforeMs) {
    const warning = expiringRecord(latest, expiry, at, refreshed);
    await options.notifier?.warnExpiry(manager, name, warnBeforeMs, warning).catch(() => {});
    return warning;
  }
  if (refreshed) {
    const idleFor =
      lastObtained === undefined ? "never refreshed" : `idle for ${formatDuration(now - lastObtained)}`;
    return readyRecord(
      name,
      READY_REASONS.refreshed,
      `refreshed (${idleFor}) so the refresh token stays alive`,
      recordTimesOf(latest, at),
    );
  }
  return readyRecord(
    name,
    READY_REASONS.idle_ok,
    `used ${formatDuration(at - (lastObtained ?? at))} ago; next keepalive refresh after ${formatDuration(idleMs)} idle`,
    recordTimesOf(latest, at),
  );
}

/** One pass over `names` (default: every connector in the store). */
export async function keepaliveOnce(
  manager: TokenManager,
  names: readonly string[] | undefined,
  options: KeepaliveOptions = {},
): Promise<SkipRecord[]> {
  const list = names && names.length > 0 ? names : await manager.connectors();
  const out: SkipRecord[] = [];
  // One at a time: keepalive is a background chore, and a burst against one AS helps nobody.
  for (const name of list) {
    if (options.signal?.aborted) break;
    out.push(await keepaliveConnector(manager, name, options));
  }
  return out;
}

/**
 * The service: a pass every `intervalMs` until `signal` aborts (SIGTERM). Resolves cleanly on
 * abort; a pass in progress finishes its current connector's refresh first.
 */
export async function runKeepalive(
  manager: TokenManager,
  options: KeepaliveOptions & {
    names?: readonly string[];
    intervalMs?: number;
    signal: AbortSignal;
    onPass: (records: SkipRecord[]) => void;
  },
): Promise<void> {
  const interval = Math.max(1_000, options.intervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS);
  while (!options.signal.aborted) {
    const records = await keepaliveOnce(manager, options.names, options);
    if (!options.signal.aborted) options.onPass(records);
    try {
      await manager.clock.sleep(interval, options.signal);
    } catch {
      return;
    }
  }
}

function expiringRecord(
  record: ConnectorRecord,
  expiry: number,
  now: number,
  refreshed: boolean,
): SkipRecord {
  const left = expiry - now;
  return {
    connector: record.name,
    status: "degraded",
    reason: "refresh_token_expiring",
    expires_at: record.tokens?.expiresAt == null ? null : new Date(record.tokens.expiresAt).toISOString(),
    refresh_token_expires_at: new Date(expiry).toISOString(),
    detail: `${refreshed ? "refreshed; " : ""}the refresh token expires at ${new Date(expiry).toISOString()} (in ${formatDuration(left)}) and cannot be renewed past it: re-authorize before then`,
    action: reauthAction(record.name, record.server.mcpUrl, record.grant, record.scope),
    code: null,
    exit_code: EXIT.ok,
    at: new Date(now).toISOString(),
  };
}
