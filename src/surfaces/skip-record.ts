/**
 * The skip record: one JSON object per connector that says whether a scheduled job can rely on
 * it, and if not, why and what a human should do. `ensure --json`, `run` (before and during the
 * command), `keepalive --json`, `--skip-file` and notifications all use this one schema, so a
 * monitoring script parses a single shape. The schema is documented in docs/unattended.md.
 *
 * Built only from typed errors and record fields: never from a token, never from raw server text
 * (error messages are already scrubbed by the error classes).
 */
import { z } from "zod";
import { isoTime as safeIso } from "../core/duration.js";
import {
  EXIT,
  exitCodeFor,
  isRetryable,
  type ReauthRequiredError,
  TokenkeeperError,
} from "../core/errors.js";
import { scrubText } from "../core/secret.js";

export const SKIP_STATUSES = ["ready", "skipped", "degraded"] as const;
export type SkipStatus = (typeof SKIP_STATUSES)[number];

const isoTime = z.iso.datetime({ offset: true });

export const skipRecordSchema = z.object({
  /** The connector's name. */
  connector: z.string().min(1),
  /**
   * ready: tokens can be produced for the whole run.
   * degraded: usable now (the current access token covers the run), but refreshing is failing
   *   for a reason that may pass; the job may run, someone should look.
   * skipped: the job must not rely on this connector; `exit_code` says whether to retry (75),
   *   get a human to re-authorize (77) or fix the configuration (78).
   */
  status: z.enum(SKIP_STATUSES),
  /** A stable, machine-readable reason: see REASONS in docs/unattended.md. */
  reason: z.string().min(1),
  /** When the current access token expires (null: unknown expiry, or no token). */
  expires_at: isoTime.nullable(),
  /** When the refresh token's known absolute lifetime ends (null: unknown or none). */
  refresh_token_expires_at: isoTime.nullable(),
  /** One human-readable sentence; never contains a secret. */
  detail: z.string(),
  /** What a human should do, as a command line when possible; null when nothing is needed. */
  action: z.string().nullable(),
  /** The stable error code behind a degraded or skipped status (null when ready). */
  code: z.string().nullable(),
  /** The process exit code this record alone implies (0 for ready and degraded). */
  exit_code: z.number().int().min(0).max(255),
  /** When the record was made. */
  at: isoTime,
});

export type SkipRecord = z.infer<typeof skipRecordSchema>;

/** Stable reasons beyond the ReauthReason values and error codes they may also carry. */
export const READY_REASONS = {
  /** The stored token already covered the run; the refresh path was proven recently. */
  fresh: "fresh",
  /** Tokenkeeper refreshed just now and the new token covers the run. */
  refreshed: "refreshed",
  /** A keepalive pass left the connector alone: recently used, nothing due. */
  idle_ok: "idle_ok",
} as const;

export interface RecordTimes {
  now: number;
  expiresAt?: number | null;
  refreshTokenExpiresAt?: number | null;
}

const iso = safeIso;

function base(connector: string, times: RecordTimes) {
  return {
    connector,
    expires_at: iso(times.expiresAt),
    refresh_token_expires_at: iso(times.refreshTokenExpiresAt),
    at: iso(times.now) ?? new Date(0).toISOString(),
  };
}

export function readyRecord(
  connector: string,
  reason: string,
  detail: string,
  times: RecordTimes,
): SkipRecord {
  return {
    ...base(connector, times),
    status: "ready",
    reason,
    detail,
    action: null,
    code: null,
    exit_code: EXIT.ok,
  };
}

/**
 * Usable now, refresh failing for a reason that may pass (a transient error). Exit 0: the job
 * has a token for its declared run; the record tells monitoring that the refresh path is sick.
 */
export function degradedRecord(connector: string, error: TokenkeeperError, times: RecordTimes): SkipRecord {
  return {
    ...base(connector, times),
    status: "degraded",
    reason: "refresh_failing",
    detail: `the current token covers the run, but refreshing failed: ${scrubText(error.message, 400)}`,
    action: null,
    code: error.code,
    exit_code: EXIT.ok,
  };
}

/** The record for a connector the job must not use, from the typed error that says why. */
export function skippedRecord(connector: string, error: unknown, times: RecordTimes): SkipRecord {
  if (error instanceof TokenkeeperError) {
    const reauth = error.code === "reauth_required" ? (error as ReauthRequiredError) : undefined;
    const reason =
      reauth?.reason ?? (typeof error.fields.reason === "string" ? error.fields.reason : error.code);
    const action =
      reauth?.action ??
      (typeof error.fields.action === "string" ? error.fields.action : actionFor(error, connector));
    return {
      ...base(connector, times),
      status: "skipped",
      reason,
      detail: scrubText(error.message, 600),
      action,
      code: error.code,
      exit_code: exitCodeFor(error),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    ...base(connector, times),
    status: "skipped",
    reason: "internal",
    detail: scrubText(message, 600),
    action: "report this as a Tokenkeeper bug, with the command line and --events output",
    code: "internal",
    exit_code: EXIT.failure,
  };
}

function actionFor(error: TokenkeeperError, connector: string): string | null {
  if (isRetryable(error)) return "none now: the server or store is failing; the next scheduled run retries";
  switch (error.code) {
    case "not_found":
      return `run \`tokenkeeper login <mcp-server-url> --name ${connector}\`, or fix the connector name`;
    case "invalid_config":
      return "fix the command line or the connector's settings";
    default:
      return null;
  }
}

/**
 * One exit code for several records. A failure that retrying will not fix outranks one that it
 * may: configuration (78) > re-authorization (77) > protocol (76) > store I/O (74) > other (1) >
 * transient (75) > ok (0). A cron wrapper seeing 75 knows every connector is worth retrying.
 */
export function combinedExitCode(records: readonly Pick<SkipRecord, "exit_code">[]): number {
  const rank = [
    EXIT.config,
    EXIT.reauth,
    EXIT.protocol,
    EXIT.ioError,
    EXIT.failure,
    EXIT.usage,
    EXIT.transient,
  ];
  let best: number = EXIT.ok;
  let bestRank = Number.POSITIVE_INFINITY;
  for (const r of records) {
    if (r.exit_code === EXIT.ok) continue;
    const i = rank.indexOf(r.exit_code as (typeof rank)[number]);
    const at = i === -1 ? rank.indexOf(EXIT.failure) : i;
    if (at < bestRank) {
      bestRank = at;
      best = r.exit_code;
    }
  }
  return best;
}

/**
 * The JSON text of a record. Not through the generic redact(): it would blank the `code` field
 * (an OAuth authorization code shares the name). Safety comes from the schema instead: parsing
 * keeps only the documented fields, so nothing else can ride along.
 */
export function skipRecordJson(r: SkipRecord, extra: Record<string, string> = {}): string {
  return JSON.stringify({ ...skipRecordSchema.parse(r), ...extra });
}

/** One line for people (stderr, logs); the JSON form is the record itself. */
export function describeRecord(r: SkipRecord): string {
  const until = r.expires_at ? ` (token until ${r.expires_at})` : "";
  const head = `${r.connector}: ${r.status} — ${r.reason}${r.status === "ready" ? until : ""}`;
  const detail = r.status === "ready" ? "" : `: ${r.detail}`;
  const action = r.action ? `\n  → ${r.action}` : "";
  return `${head}${detail}${action}`;
}
