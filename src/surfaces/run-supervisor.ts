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
 * One TokenManager serves the endpoint and the keepers, so there is one refresher per run.
 */
import { type ChildProcess, type StdioOptions, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { childEnv } from "../core/child-env.js";
import {
  EXIT,
  exitCodeFor,
  isTokenkeeperError,
  type ReauthReason,
  ReauthRequiredError,
  type TokenkeeperError,
} from "../core/errors.js";
import type { TokenkeeperEvent } from "../manager/events.js";
import { DEFAULT_REFRESH_AHEAD_MS, expiryMarginMs, refreshWindowMs } from "../manager/refresh-policy.js";
import type { TokenManager } from "../manager/token-manager.js";
import { coversRun, knownRefreshTokenExpiry, type PreflightOptions, preflightAll } from "./preflight.js";
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
  const stopKeepers = new AbortController();
  const lost = new Set<string>();
  const unsubscribe = manager.subscribe((event) => {
    // Another caller (the child, through the endpoint) may be the one that finds the grant dead.
    if (
      event.type === "reauth_required" &&
      options.connectors.includes(event.connector) &&
      !lost.has(event.connector)
    ) {
      lost.add(event.connector);
      const record = manager.cached(event.connector)?.record;
      report(
        skippedRecord(event.connector, reauthFromEvent(event), {
          now: event.at,
          expiresAt: record?.tokens?.expiresAt ?? null,
          refreshTokenExpiresAt: record ? knownRefreshTokenExpiry(record) : null,
        }),
        "run",
      );
    }
  });
  const keepers = options.connectors.map((name) =>
    keepFresh(manager, name, stopKeepers.signal, lost, (r) => report(r, "run")).catch(() => {}),
  );

  try {
    // The child gets tokens from the endpoint, never the store's key or a client secret.
    const exitCode = await runChild(options, {
      ...childEnv(options.env, { keepRunEndpoint: true }),
      ...endpoint.env(),
    });
    return { started: true, exitCode, records };
  } finally {
    stopKeepers.abort();
    unsubscribe();
    await Promise.allSettled(keepers);
    await endpoint.close();
  }
}

/** Rebuilds the typed error from a reauth_required event (events carry fields, not error objects). */
function reauthFromEvent(event: Extract<TokenkeeperEvent, { type: "reauth_required" }>): ReauthRequiredError {
  return new ReauthRequiredError({
    connector: event.connector,
    reason: event.reason as ReauthReason,
    since: event.since,
    action: event.action,
    ...(event.serverError ? { serverError: event.serverError } : {}),
    ...(event.serverErrorDescription ? { serverErrorDescription: event.serverErrorDescription } : {}),
    ...(event.requiredScope ? { requiredScope: event.requiredScope } : {}),
  });
}

/**
 * Keeps one connector's token fresh: sleeps until the token enters its refresh-ahead window, then
 * refreshes (unless someone else already did). Transient failures are retried with backoff while
 * they last, reported once per change (degraded while the current token is still valid, skipped
 * once it is gone, recovered when refreshing works again). Stops for good when a human is needed:
 * that is reported as a skip record.
 */
async function keepFresh(
  manager: TokenManager,
  name: string,
  signal: AbortSignal,
  lost: Set<string>,
  report: (r: SkipRecord) => void,
): Promise<void> {
  const clock = manager.clock;
  let failing: "degraded" | "skipped" | undefined;
  let backoffMs = 1_000;
  let lastAttemptAt: number | undefined;
  while (!signal.aborted && !lost.has(name)) {
    const record = manager.cached(name)?.record;
    const tokens = record?.tokens;
    const now = clock.now();
    let waitMs: number;
    if (!record || !tokens) {
      waitMs = 0;
    } else if (tokens.expiresAt === null) {
      // No stated expiry: nothing to schedule; a 401 will tell the callers. Look again later.
      waitMs = 60_000;
    } else {
      const ahead = record.settings.refreshAheadMs ?? DEFAULT_REFRESH_AHEAD_MS;
      waitMs = tokens.expiresAt - expiryMarginMs(tokens) - refreshWindowMs(tokens, ahead) - now;
    }
    // Never more than one attempt a second, whatever lifetime the server grants (even zero).
    if (lastAttemptAt !== undefined && now - lastAttemptAt < 1_000)
      waitMs = Math.max(waitMs, 1_000 - (now - lastAttemptAt));
    if (waitMs > 0) {
      // Capped so a token written by another process (a later expiry) is noticed reasonably soon.
      await clock.sleep(Math.min(waitMs, 60_000), signal).catch(() => {});
      continue;
    }
    lastAttemptAt = now;
    try {
      // "Newer than this token": when another process already refreshed, this is a store read.
      if (tokens) await manager.refreshAfterRejection(name, tokens.accessToken, { signal });
      else await manager.getAccessToken(name, { signal });
      if (failing) {
        const after = manager.cached(name)?.record;
        report(
          readyRecord(name, "recovered", "refreshing works again", {
            now: clock.now(),
            expiresAt: after?.tokens?.expiresAt ?? null,
            refreshTokenExpiresAt: after ? knownRefreshTokenExpiry(after) : null,
          }),
        );
      }
      failing = undefined;
      backoffMs = 1_000;
    } catch (error) {
      if (signal.aborted) return;
      const current = manager.cached(name)?.record ?? record;
      const times = {
        now: clock.now(),
        expiresAt: current?.tokens?.expiresAt ?? null,
        refreshTokenExpiresAt: current ? knownRefreshTokenExpiry(current) : null,
      };
      if (exitCodeFor(error) === EXIT.reauth) {
        if (!lost.has(name)) {
          lost.add(name);
          report(skippedRecord(name, error, times));
        }
        return;
      }
      const usable = current ? coversRun(current, clock.now(), 0) : false;
      const state = usable && isTokenkeeperError(error) ? "degraded" : "skipped";
      if (state !== failing) {
        report(
          state === "degraded"
            ? degradedRecord(name, error as TokenkeeperError, times)
            : skippedRecord(name, error, times),
        );
        failing = state;
      }
      await clock.sleep(backoffMs, signal).catch(() => {});
      backoffMs = Math.min(backoffMs * 2, 60_000);
    }
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
