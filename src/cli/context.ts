/**
 * What every CLI command receives. Commands never reach for process.* directly, so tests can
 * run them in-process with captured output, a fake environment and an injected clock.
 */
import type { Readable, Writable } from "node:stream";
import type { Clock } from "../core/clock.js";
import type { FetchLike } from "../oauth/http.js";

export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
}

export interface CliContext extends CliIO {
  env: NodeJS.ProcessEnv;
  clock: Clock;
  fetch?: FetchLike;
  /** Aborted on SIGINT/SIGTERM; long-running commands stop cleanly when it fires. */
  signal: AbortSignal;
  /** Whether a human is at a terminal (stdin and stderr are TTYs). */
  interactive: boolean;
  /**
   * How to start this same CLI again, with absolute paths (node binary, script), for
   * configurations other programs run with their own PATH. Absent in-process (tests).
   */
  self?: { command: string; args: string[] };
}

/** What a network step takes from the context: its clock, its cancellation, and an injected fetch (tests). */
export function networkDeps(ctx: CliContext): { clock: Clock; signal: AbortSignal; fetch?: FetchLike } {
  return { clock: ctx.clock, signal: ctx.signal, ...(ctx.fetch ? { fetch: ctx.fetch } : {}) };
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /**
   * Returns the process exit code. Throws TokenkeeperError for mapped failures. Commands are
   * declared through interactiveCommand or scheduledCommand (args.ts), which answer a bad
   * command line by the command's audience.
   */
  run(args: string[], ctx: CliContext): Promise<number>;
  /**
   * Stdout carries only a successful answer, even with --json (errors stay on stderr): for
   * `headers`, whose stdout a client sends as HTTP headers.
   */
  stdoutOnlyOnSuccess?: boolean;
}
