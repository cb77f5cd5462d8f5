/**
 * `tokenkeeper run [--connector NAME…] [--min-ttl DURATION] [--skip-file PATH] -- COMMAND ARGS…`
 *
 * The preflight of `ensure`, then COMMAND with its tokens kept fresh for its whole life
 * (run-supervisor.ts). Where records go, so that the job's own stdout stays the job's:
 *   - not ready: the skip records on stdout (JSON lines) and appended to --skip-file; the command
 *     is not started; exit 75/77/78;
 *   - degraded at start, or a connector lost/failing/recovered mid-run: stderr (a readable line)
 *     and --skip-file (JSON line), as it happens;
 *   - every record also goes to the events log.
 * Exit code: the command's own (128+N if it died of signal N, 127 if it could not be started).
 */
import { closeSync, writeSync } from "node:fs";
import { ConfigError } from "../../core/errors.js";
import { superviseRun } from "../../surfaces/run-supervisor.js";
import { describeRecord, type SkipRecord, skipRecordJson } from "../../surfaces/skip-record.js";
import { durationFlag, parseFlags, scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { openPrivateAppend } from "../private-append.js";
import { DEFAULT_MIN_TTL, openUnattended, UNATTENDED_HELP, UNATTENDED_OPTIONS } from "../unattended.js";

const USAGE = `Usage: tokenkeeper run [--connector NAME]… [--min-ttl DURATION] [--skip-file PATH] [options] -- COMMAND [ARGS…]

Checks the connectors like \`tokenkeeper ensure\` (default: every connector in the store). If one
is not ready, writes its skip record (stdout and --skip-file) and exits with its code without
starting COMMAND. Otherwise runs COMMAND and keeps its tokens fresh until it exits. COMMAND gets
a token at any moment with \`tokenkeeper token NAME\`, or from the endpoint in its environment:
  TOKENKEEPER_RUN_URL, TOKENKEEPER_RUN_SECRET, TOKENKEEPER_RUN_CONNECTORS (docs/unattended.md)

  --connector NAME        a connector the command uses (repeatable)
  --min-ttl DURATION      how long the command runs (default ${DEFAULT_MIN_TTL})
  --skip-file PATH        also append skip records there (JSON lines)
  --kill-after DURATION   after forwarding SIGTERM, SIGKILL the command this much later (default 10s)
  --json                  accepted for symmetry: skip records are always JSON lines on stdout
${UNATTENDED_HELP}

Exit codes: the command's own; without starting it: 75 transient, 77 re-authorization required,
78 configuration error.`;

export const runCommand = scheduledCommand({
  name: "run",
  summary: "run a command with fresh tokens for its whole run (preflight first)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const dashdash = args.indexOf("--");
  if (dashdash === -1 || dashdash === args.length - 1)
    throw new ConfigError("give the command after --, e.g. tokenkeeper run --connector NAME -- ./job.sh");
  const [command, ...commandArgs] = args.slice(dashdash + 1) as [string, ...string[]];
  const { values, positionals } = parseFlags(args.slice(0, dashdash), {
    connector: { type: "string", multiple: true },
    "min-ttl": { type: "string" },
    "skip-file": { type: "string" },
    "kill-after": { type: "string" },
    // Accepted like every command's: the records run prints are JSON lines already, and
    // COMMAND's own output is COMMAND's.
    json: { type: "boolean" },
    ...UNATTENDED_OPTIONS,
  });
  if (positionals.length > 0)
    throw new ConfigError(
      `unexpected argument ${JSON.stringify(positionals[0])} before --; name connectors with --connector`,
    );
  const minTtlMs = durationFlag("--min-ttl", values["min-ttl"] ?? DEFAULT_MIN_TTL);
  const killAfterMs = durationFlag("--kill-after", values["kill-after"] ?? "10s");
  const skipFile = values["skip-file"];

  const session = await openUnattended(ctx, values);
  try {
    const connectors = values.connector?.length ? [...new Set(values.connector)] : await session.store.list();
    if (connectors.length === 0)
      throw new ConfigError(`no connectors in ${session.store.location}; name them with --connector`);

    const writeSkipFile = (r: SkipRecord) => {
      if (!skipFile) return;
      try {
        // One write() on an O_APPEND descriptor per record: lines of parallel runs never interleave.
        const fd = openPrivateAppend(skipFile, "--skip-file");
        try {
          writeSync(fd, `${skipRecordJson(r)}\n`);
        } finally {
          closeSync(fd);
        }
      } catch (error) {
        const why =
          error instanceof ConfigError ? error.message : ((error as NodeJS.ErrnoException).code ?? "error");
        ctx.stderr.write(`tokenkeeper: cannot write --skip-file ${skipFile}: ${why}\n`);
      }
    };
    const preflightRecords: SkipRecord[] = [];

    const outcome = await superviseRun({
      manager: session.manager,
      connectors,
      command,
      args: commandArgs,
      env: ctx.env,
      preflight: { minTtlMs },
      signal: ctx.signal,
      killAfterMs,
      stdio: { stdin: ctx.stdin, stdout: ctx.stdout, stderr: ctx.stderr },
      onRecord: (record, phase) => {
        session.events?.record(record, phase);
        if (phase === "preflight") {
          preflightRecords.push(record);
          return;
        }
        ctx.stderr.write(`tokenkeeper: ${describeRecord(record)}\n`);
        writeSkipFile(record);
      },
      onStart: (pid) => {
        // The command is starting: report a degraded preflight where the job's operator looks, not on its stdout.
        for (const r of preflightRecords.filter((p) => p.status === "degraded")) {
          ctx.stderr.write(`tokenkeeper: ${describeRecord(r)}\n`);
          writeSkipFile(r);
        }
        session.events?.note("run_started", ctx.clock.now(), { pid: pid ?? null, command, connectors });
      },
    });

    if (!outcome.started) {
      for (const r of preflightRecords.filter((p) => p.status !== "ready")) {
        ctx.stdout.write(`${skipRecordJson(r)}\n`);
        ctx.stderr.write(`tokenkeeper: not starting ${command}: ${describeRecord(r)}\n`);
        writeSkipFile(r);
      }
    }
    session.events?.note("run_finished", ctx.clock.now(), {
      started: outcome.started,
      exit_code: outcome.exitCode,
    });
    return outcome.exitCode;
  } finally {
    await session.close();
  }
}
