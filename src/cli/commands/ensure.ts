/**
 * `tokenkeeper ensure [NAME…|--all] [--min-ttl DURATION] [--json]`: the preflight of a scheduled
 * job. One skip record per connector; exit 0 when every connector is ready (or degraded: usable
 * for the whole run), else the most serious code: 78 configuration, 77 re-authorization, 75
 * transient (see combinedExitCode).
 *
 * Also home of the plumbing the unattended commands share (ensure, run, keepalive, token): flag
 * parsing that maps bad flags to exit 78, and a token manager wired to the events log and to
 * notifications.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { parseDuration } from "../../core/duration.js";
import { ConfigError } from "../../core/errors.js";
import { TokenManager } from "../../manager/token-manager.js";
import type { Store } from "../../store/types.js";
import { Notifier, notifyOnReauth } from "../../surfaces/notify.js";
import { preflightAll } from "../../surfaces/preflight.js";
import {
  combinedExitCode,
  describeRecord,
  type SkipRecord,
  skipRecordJson,
} from "../../surfaces/skip-record.js";
import type { CliContext, Command } from "../context.js";
import { type EventsLog, logManagerEvents, openEventsLog } from "../events-log.js";
import { openCliStore } from "../runtime.js";

const USAGE = `Usage: tokenkeeper ensure [NAME…|--all] [--min-ttl DURATION] [--json] [options]

The preflight of a scheduled job: makes sure each connector can produce tokens for the next
--min-ttl (default 5m), refreshing now if needed. Ready means: the access token is fresh, the
refresh path works (proven by a refresh in the last 10 seconds, or by one now), and the refresh
token's known absolute expiry, if any, lies beyond the run.

  --all                   every connector in the store
  --min-ttl DURATION      how long the job runs (e.g. 30m, 2h)
  --json                  one skip record per connector on stdout (docs/unattended.md)
${sharedOptionsHelp()}

Exit codes: 0 ready (or degraded: usable for the whole run), 75 transient (the server is failing:
try later), 77 a human must re-authorize, 78 configuration error (unknown connector, bad flags).`;

export const ensureCommand: Command = {
  name: "ensure",
  summary: "preflight for a scheduled job: are tokens good for the whole run?",
  usage: USAGE,
  run,
};

export const DEFAULT_MIN_TTL = "5m";

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags("ensure", args, {
    all: { type: "boolean" },
    "min-ttl": { type: "string" },
    json: { type: "boolean" },
    ...SHARED_OPTIONS,
  });
  if (values.all && positionals.length > 0) throw new ConfigError("give connector names or --all, not both");
  if (!values.all && positionals.length === 0)
    throw new ConfigError("name the connectors to check, or --all");
  const minTtlMs = durationFlag("--min-ttl", values["min-ttl"] ?? DEFAULT_MIN_TTL);

  const session = await openUnattended(ctx, values);
  try {
    const names = values.all ? await session.store.list() : positionals;
    if (names.length === 0) throw new ConfigError(`no connectors in ${session.store.location}`);
    const records = await preflightAll(session.manager, names, { minTtlMs, signal: ctx.signal });
    for (const r of records) session.events?.record(r, "ensure");
    writeRecords(ctx, records, values.json === true);
    return combinedExitCode(records);
  } finally {
    await session.close();
  }
}

// ---- shared by the unattended commands --------------------------------------------------

export const SHARED_OPTIONS = {
  store: { type: "string" },
  events: { type: "string" },
  "notify-command": { type: "string" },
  "notify-webhook": { type: "string" },
  timeout: { type: "string" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

export function sharedOptionsHelp(): string {
  return [
    "  --store URL             the store (default TOKENKEEPER_STORE, else the state directory)",
    "  --events FILE           append events and skip records as JSON lines (or TOKENKEEPER_EVENTS)",
    "  --notify-command CMD    run CMD (sh -c) with the record on stdin when a human is needed",
    "                          (or TOKENKEEPER_NOTIFY_COMMAND; a connector's own setting wins)",
    "  --notify-webhook URL    POST the record as JSON there (or TOKENKEEPER_NOTIFY_WEBHOOK)",
    "  --timeout DURATION      stop retrying a failing token endpoint after this (default 30s)",
  ].join("\n");
}

type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** parseArgs, strict, with every mistake a ConfigError (exit 78) that names the command. */
export function parseFlags<O extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new ConfigError(
      `tokenkeeper ${command}: ${error instanceof Error ? error.message : String(error)} (see --help)`,
    );
  }
}

export function durationFlag(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new ConfigError(
      `${flag} ${JSON.stringify(value.slice(0, 40))} is not a duration (examples: 30s, 5m, 1h30m, 2d)`,
    );
  }
}

export interface UnattendedSession {
  store: Store;
  manager: TokenManager;
  notifier: Notifier;
  events: EventsLog | undefined;
  /** Waits for notifications in flight (bounded by their timeouts), then releases everything. */
  close(): Promise<void>;
}

/** A manager for one command, its events logged and its reauth transitions announced. */
export async function openUnattended(ctx: CliContext, values: ParsedValues): Promise<UnattendedSession> {
  const str = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  const timeoutMs = durationFlag("--timeout", str("timeout") ?? "30s");
  // Opened last of the cheap steps: a bad webhook URL must not leave the events file open.
  let events: EventsLog | undefined;
  const notifier = new Notifier({
    global: {
      ...optional("command", str("notify-command") ?? ctx.env.TOKENKEEPER_NOTIFY_COMMAND),
      ...optional("webhook", str("notify-webhook") ?? ctx.env.TOKENKEEPER_NOTIFY_WEBHOOK),
    },
    clock: ctx.clock,
    env: ctx.env,
    ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
    onFailure: (f) => {
      ctx.stderr.write(
        `tokenkeeper: notification for "${f.connector}" via ${f.channel} ${f.target} failed: ${f.error}\n`,
      );
      events?.note("notification_failed", ctx.clock.now(), f);
    },
    onSent: (n) =>
      events?.note("notification_sent", ctx.clock.now(), { connector: n.connector, event: n.event }),
  });
  events = openEventsLog(str("events"), ctx.env);
  let store: Store;
  try {
    store = await openCliStore(str("store"), ctx);
  } catch (error) {
    events?.close();
    throw error;
  }
  const manager = new TokenManager({
    store,
    clock: ctx.clock,
    ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
    // How long one refresh keeps retrying a failing token endpoint before reporting "transient".
    retry: { deadlineMs: timeoutMs },
    lock: { waitMs: Math.min(20_000, timeoutMs) },
  });
  const unlog = logManagerEvents(manager, events);
  const unnotify = notifyOnReauth(manager, notifier);
  return {
    store,
    manager,
    notifier,
    events,
    async close() {
      await manager.close();
      await notifier.drain();
      unnotify();
      unlog();
      await store.close();
      events?.close();
    },
  };
}

function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value ? ({ [key]: value } as Record<K, string>) : {};
}

/** Writes records where a job's operator looks: JSON lines, or readable lines. */
export function writeRecords(ctx: CliContext, records: readonly SkipRecord[], json: boolean): void {
  for (const r of records) ctx.stdout.write(json ? `${skipRecordJson(r)}\n` : `${describeRecord(r)}\n`);
}
