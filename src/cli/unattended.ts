/**
 * What the commands that run without a person share (ensure, run, keepalive, token, and proxy,
 * which an MCP client starts): the flags that configure a session, a token manager wired to the
 * events log and to notifications, and where skip records are written.
 */
import { TokenManager } from "../manager/token-manager.js";
import type { Store } from "../store/types.js";
import { Notifier, notifyOnReauth } from "../surfaces/notify.js";
import { describeRecord, type SkipRecord, skipRecordJson } from "../surfaces/skip-record.js";
import { durationFlag } from "./args.js";
import type { CliContext } from "./context.js";
import { type EventsLog, logManagerEvents, openEventsLog } from "./events-log.js";
import { openCliStore } from "./runtime.js";
import type { UnattendedFlags } from "./unattended-flags.js";

// The flags live apart so `token` and `headers` can parse them without loading the manager.
export { UNATTENDED_HELP, UNATTENDED_OPTIONS, type UnattendedFlags } from "./unattended-flags.js";

/** How long a job runs, unless it says (ensure, run). */
export const DEFAULT_MIN_TTL = "5m";

export interface UnattendedSession {
  store: Store;
  manager: TokenManager;
  notifier: Notifier;
  events: EventsLog | undefined;
  /** Waits for notifications in flight (bounded by their timeouts), then releases everything. */
  close(): Promise<void>;
}

export interface UnattendedMode {
  /**
   * The command answers once and exits (token, ensure, keepalive --once): its manager never
   * starts a background refresh, so nothing holds the exit up and no request is ever abandoned
   * half-way (see TokenManagerOptions.backgroundRefresh).
   */
  oneShot?: boolean;
}

/** A manager for one command, its events logged and its reauth transitions announced. */
export async function openUnattended(
  ctx: CliContext,
  flags: UnattendedFlags,
  mode: UnattendedMode = {},
): Promise<UnattendedSession> {
  const timeoutMs = durationFlag("--timeout", flags.timeout ?? "30s");
  // Opened last of the cheap steps: a bad webhook URL must not leave the events file open.
  let events: EventsLog | undefined;
  const notifier = new Notifier({
    global: {
      ...optional("command", flags["notify-command"] ?? ctx.env.TOKENKEEPER_NOTIFY_COMMAND),
      ...optional("webhook", flags["notify-webhook"] ?? ctx.env.TOKENKEEPER_NOTIFY_WEBHOOK),
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
  events = openEventsLog(flags.events, ctx.env);
  let store: Store;
  try {
    store = await openCliStore(flags.store, ctx);
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
    ...(mode.oneShot ? { backgroundRefresh: false } : {}),
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
