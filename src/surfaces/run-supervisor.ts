/**
 * `tokenkeeper run`: preflight, then run a command with tokens kept fresh for its whole life.
 *
 *   1. Preflight every connector (preflight.ts). Any `skipped` → return the records, start nothing.
 *   2. Start the per-run token endpoint (token-endpoint-server.ts) and put its address in the
 *      child's environment; `tokenkeeper token NAME` inside the child asks it.
 *   3. Keep each connector fresh in the background: refresh when its token enters the
 *      refresh-ahead window, even if the child asks for nothing for an hour.
 *   4. Report a connector that becomes unrecoverable mid-run as it happens (a skip record).
 *   5. Forward an abort (SIGTERM/SIGINT to us) to the child as the same signal, SIGKILL after a grace
 *      period, and return the child's exit code (128+signal when it died of a signal, 127 when it
 *      could not be started).
 *
 * One TokenManager serves the endpoint and the keepers (TokenManager.keep), so there is one
 * refresher per run; this file only translates what they report into skip records.
 */
import { type ChildProcess, type StdioOptions, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { childEnv } from "../core/child-env.js";
import { EXIT, type TokenkeeperError } from "../core/errors.js";
import type { TokenManager } from "../manager/token-manager.js";
import { reauthError, reauthFromEvent } from "../manager/transitions.js";
import { recordTimes } from "../manager/view.js";
import { type PreflightOptions, preflightAll } from "./preflight.js";
import {
  combinedExitCode,
  degradedRecord,
  readyRecord,
  type SkipRecord,
  skippedRecord,
} from "./skip-record.js";
import { startTokenEndpoint } from "./token-endpoint-server.js";

export interface RunSupervisorOptions {
  manager: TokenManager;
  connectors: readonly string[];
  command: string;
  args: readonly string[];
  /** The child's base environment; the run endpoint's variables are added. */
  env: NodeJS.ProcessEnv;
  preflight: Omit<PreflightOptions, "signal">;
  /** Aborting forwards SIGTERM to the child (and stops the preflight if it is still running). */
  signal: AbortSignal;
  /** After forwarding, how long the child has before SIGKILL (default 10 s). */
  killAfterMs?: number;
  /** Where the child's output goes. A stream with a file descriptor (process.stdout) is shared as is. */
  stdio?: { stdin?: Readable; stdout?: Writable; stderr?: Writable };
  cwd?: string;
  /** Every record: the preflight ones, then mid-run changes (a connector lost, failing, recovered). */
  onRecord?: (record: SkipRecord, phase: "preflight" | "run") => void;
  /** The child started (its pid), for logs and tests. */
  onStart?: (pid: number | undefined) => void;
}

export interface RunOutcome {
  /** Whether the command was started at all. */
  started: boolean;
  /** The child's exit code, or the preflight's combined code when it did not start. */
  exitCode: number;
  /** Records from the preflight and from the run, in order. */
  records: SkipRecord[];
}

export async function superviseRun(options: RunSupervisorOptions): Promise<RunOutcome> {
  const { manager } = options;
  const records: SkipRecord[] = [];
  const report = (record: SkipRecord, phase: "preflight" | "run") => {
    records.push(record);
    options.onRecord?.(record, phase);
  };

  const checked = await preflightAll(manager, options.connectors, {
    ...options.preflight,
    signal: options.signal,
  });
  for (const r of checked) report(r, "preflight");
  if (checked.some((r) => r.status === "skipped")) {
    return { started: false, exitCode: combinedExitCode(checked), records };
  }
  if (options.signal.aborted) return { started: false, exitCode: EXIT.failure, records };

  const endpoint = await startTokenEndpoint({ manager, connectors: options.connectors });
  const lost = new Set<string>();
  const times = (name: string) => recordTimes(manager.view(name), manager.clock.now());
  // One keeper per connector keeps its token fresh for the whole run, even if the child asks
  // for nothing for an hour; it reports only changes (failing, recovered, a human needed).
  const keepers = new Map(
    options.connectors.map((name) => [
      name,
      manager.keep(name, {
        onReport: (r) => {
          if (r.kind === "reauth") {
            if (lost.has(name)) return;
            lost.add(name);
            report(skippedRecord(name, r.error, times(name)), "run");
          } else if (r.kind === "recovered") {
            report(readyRecord(name, "recovered", "refreshing works again", times(name)), "run");
          } else if (r.usable) {
            report(degradedRecord(name, r.error as TokenkeeperError, times(name)), "run");
          } else {
            report(skippedRecord(name, r.error, times(name)), "run");
          }
        },
      }),
    ]),
  );
  const unsubscribe = manager.subscribe((event) => {
    // Another caller (the child, through the endpoint) may be the one that finds the grant dead.
    if (event.type === "reauth_required" && keepers.has(event.connector) && !lost.has(event.connector)) {
      const name = event.connector;
      lost.add(name);
      void keepers.get(name)?.stop();
      report(
        skippedRecord(name, reauthError(reauthFromEvent(event)), { ...times(name), now: event.at }),
        "run",
      );
    }
  });

  try {
    // The child gets tokens from the endpoint, never the store's key or a client secret.
    const exitCode = await runChild(options, {
      ...childEnv(options.env, { keepRunEndpoint: true }),
      ...endpoint.env(),
    });
    return { started: true, exitCode, records };
  } finally {
    unsubscribe();
    await Promise.all([...keepers.values()].map((k) => k.stop()));
    await endpoint.close();
  }
}

function runChild(options: RunSupervisorOptions, env: NodeJS.ProcessEnv): Promise<number> {
  const clock = options.manager.clock;
  const killAfterMs = options.killAfterMs ?? 10_000;
  const io = options.stdio ?? {};
  const stdio: StdioOptions = [
    share(io.stdin, "inherit"),
    share(io.stdout, "inherit"),
    share(io.stderr, "inherit"),
  ];

  return new Promise<number>((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(options.command, [...options.args], {
        env,
        stdio,
        ...(options.cwd ? { cwd: options.cwd } : {}),
      });
    } catch (error) {
      io.stderr?.write(
        `tokenkeeper: cannot start ${options.command}: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      resolve(127);
      return;
    }
    if (child.stdout && io.stdout) child.stdout.pipe(io.stdout, { end: false });
    if (child.stderr && io.stderr) child.stderr.pipe(io.stderr, { end: false });
    if (child.stdin && io.stdin) io.stdin.pipe(child.stdin);

    const stopTimers = new AbortController();
    const forward = () => {
      // Forward the signal we got (the CLI puts it on the abort reason), SIGTERM otherwise.
      // The child may already be gone; kill() then returns false, which is fine.
      const reason = options.signal.reason as { signal?: unknown } | undefined;
      child.kill(reason?.signal === "SIGINT" ? "SIGINT" : "SIGTERM");
      clock.sleep(killAfterMs, stopTimers.signal).then(
        () => child.kill("SIGKILL"),
        () => {},
      );
    };
    if (options.signal.aborted) forward();
    else options.signal.addEventListener("abort", forward, { once: true });

    child.once("spawn", () => options.onStart?.(child.pid));
    child.once("error", (error: NodeJS.ErrnoException) => {
      // ENOENT / EACCES: the command never ran. 127 is what shells say for "command not found".
      io.stderr?.write(`tokenkeeper: cannot start ${options.command}: ${error.code ?? error.message}\n`);
      options.signal.removeEventListener("abort", forward);
      stopTimers.abort();
      resolve(error.code === "EACCES" ? 126 : 127);
    });
    child.once("close", (code, signal) => {
      if (child.stdin && io.stdin) io.stdin.unpipe(child.stdin);
      options.signal.removeEventListener("abort", forward);
      stopTimers.abort();
      if (code !== null) resolve(code);
      else resolve(128 + (signal ? (constants.signals[signal] ?? 15) : 15));
    });
  });
}

/** A stream with a real file descriptor (process.stdout, a file) is handed to the child as is; others are piped. */
function share(stream: Readable | Writable | undefined, fallback: "inherit"): "inherit" | "pipe" | number {
  if (!stream) return fallback;
  const fd = (stream as { fd?: unknown }).fd;
  return typeof fd === "number" ? fd : "pipe";
}
