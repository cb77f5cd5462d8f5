/**
 * `tokenkeeper keepalive [NAME…] [--interval DURATION] [--once]`: refreshes connectors that sit
 * idle long enough for their refresh tokens to lapse, warns ahead of a refresh token's known
 * absolute expiry, and retries notifications that did not get through (surfaces/keepalive.ts).
 * `--once` is one pass for cron and systemd timers (exit code from its records, like ensure);
 * without it, a pass every --interval until SIGTERM, then a clean exit 0.
 */

import { formatDuration } from "../../core/duration.js";
import { EXIT } from "../../core/errors.js";
import {
  DEFAULT_IDLE_MS,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_WARN_BEFORE_MS,
  keepaliveOnce,
  runKeepalive,
} from "../../surfaces/keepalive.js";
import { combinedExitCode, type SkipRecord } from "../../surfaces/skip-record.js";
import { durationFlag, parseFlags, scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { openUnattended, UNATTENDED_HELP, UNATTENDED_OPTIONS, writeRecords } from "../unattended.js";

const USAGE = `Usage: tokenkeeper keepalive [NAME…] [--once] [--interval DURATION] [options]

Keeps idle connectors alive (default: every connector in the store):
  - refreshes a connector whose tokens were last obtained --idle ago (default ${formatDuration(DEFAULT_IDLE_MS)}), so
    refresh tokens that lapse with disuse do not;
  - warns --warn-before (default ${formatDuration(DEFAULT_WARN_BEFORE_MS)}) ahead of a refresh token's known absolute
    expiry, once, through the notification channels, so someone re-authorizes in daylight;
  - re-sends a "re-authorization required" notification that failed before.

  --once                  one pass, then exit (for cron and systemd timers)
  --interval DURATION     time between passes as a service (default ${formatDuration(DEFAULT_KEEPALIVE_INTERVAL_MS)})
  --idle DURATION         refresh connectors idle this long
  --warn-before DURATION  warn this long before a refresh token's known expiry
  --json                  one skip record per connector and pass on stdout
  --verbose               a line for every connector, healthy or not (default with --once:
                          only connectors that need attention, so cron mails only trouble)
${UNATTENDED_HELP}

Exit codes with --once: 0 all usable, 75 transient, 77 a human must re-authorize, 78 configuration.
As a service: 0 after SIGTERM/SIGINT.`;

/**
 * Which records get a line. --json and --verbose: all. --once (cron, a timer): only those that
 * need attention, since cron mails whatever a job prints and a healthy pass every hour would
 * bury the one that matters. As a service (journald): also what changed something (a refresh).
 */
export function worthALine(
  records: readonly SkipRecord[],
  how: { json: boolean; once: boolean; verbose: boolean },
): readonly SkipRecord[] {
  if (how.json || how.verbose) return records;
  if (how.once) return records.filter((r) => r.status !== "ready");
  return records.filter((r) => r.reason !== "idle_ok");
}

export const keepaliveCommand = scheduledCommand({
  name: "keepalive",
  summary: "refresh idle connectors and warn before refresh tokens expire (cron, systemd, or service)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    once: { type: "boolean" },
    interval: { type: "string" },
    idle: { type: "string" },
    "warn-before": { type: "string" },
    json: { type: "boolean" },
    verbose: { type: "boolean" },
    ...UNATTENDED_OPTIONS,
  });
  const intervalMs = durationFlag(
    "--interval",
    values.interval ?? formatDuration(DEFAULT_KEEPALIVE_INTERVAL_MS),
  );
  const idleMs = values.idle === undefined ? DEFAULT_IDLE_MS : durationFlag("--idle", values.idle);
  const warnBeforeMs =
    values["warn-before"] === undefined
      ? DEFAULT_WARN_BEFORE_MS
      : durationFlag("--warn-before", values["warn-before"]);
  const json = values.json === true;

  const session = await openUnattended(ctx, values, { oneShot: values.once === true });
  const options = { idleMs, warnBeforeMs, notifier: session.notifier, signal: ctx.signal };
  const report = (records: SkipRecord[]) => {
    for (const r of records) session.events?.record(r, "keepalive");
    writeRecords(
      ctx,
      worthALine(records, { json, once: values.once === true, verbose: values.verbose === true }),
      json,
    );
  };
  try {
    if (values.once) {
      const records = await keepaliveOnce(session.manager, positionals, options);
      report(records);
      return combinedExitCode(records);
    }
    await runKeepalive(session.manager, { ...options, names: positionals, intervalMs, onPass: report });
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
