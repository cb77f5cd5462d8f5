/**
 * `tokenkeeper ensure [NAME…|--all] [--min-ttl DURATION] [--json]`: the preflight of a scheduled
 * job. One skip record per connector; exit 0 when every connector is ready (or degraded: usable
 * for the whole run), else the most serious code: 78 configuration, 77 re-authorization, 75
 * transient (see combinedExitCode).
 */
import { ConfigError } from "../../core/errors.js";
import { preflightAll } from "../../surfaces/preflight.js";
import { combinedExitCode } from "../../surfaces/skip-record.js";
import { durationFlag, parseFlags, scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import {
  DEFAULT_MIN_TTL,
  openUnattended,
  UNATTENDED_HELP,
  UNATTENDED_OPTIONS,
  writeRecords,
} from "../unattended.js";

const USAGE = `Usage: tokenkeeper ensure [NAME…|--all] [--min-ttl DURATION] [--json] [options]

The preflight of a scheduled job: makes sure each connector can produce tokens for the next
--min-ttl (default ${DEFAULT_MIN_TTL}), refreshing now if needed. Ready means: the access token is fresh, the
refresh path works (proven by a refresh in the last 10 seconds, or by one now), and the refresh
token's known absolute expiry, if any, lies beyond the run.

  --all                   every connector in the store
  --min-ttl DURATION      how long the job runs (e.g. 30m, 2h)
  --json                  one skip record per connector on stdout (docs/unattended.md)
${UNATTENDED_HELP}

Exit codes: 0 ready (or degraded: usable for the whole run), 75 transient (the server is failing:
try later), 77 a human must re-authorize, 78 configuration error (unknown connector, bad flags).`;

export const ensureCommand = scheduledCommand({
  name: "ensure",
  summary: "preflight for a scheduled job: are tokens good for the whole run?",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    all: { type: "boolean" },
    "min-ttl": { type: "string" },
    json: { type: "boolean" },
    ...UNATTENDED_OPTIONS,
  });
  if (values.all && positionals.length > 0) throw new ConfigError("give connector names or --all, not both");
  if (!values.all && positionals.length === 0)
    throw new ConfigError("name the connectors to check, or --all");
  const minTtlMs = durationFlag("--min-ttl", values["min-ttl"] ?? DEFAULT_MIN_TTL);

  const session = await openUnattended(ctx, values, { oneShot: true });
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
