/** Runs the CLI in-process, as `main(argv, ctx)`, with captured output: the one way tests drive commands without a process. */
import { PassThrough, type Readable } from "node:stream";
import type { CliContext } from "../../src/cli/context.js";
import { main } from "../../src/cli/main.js";
import { type Clock, systemClock } from "../../src/core/clock.js";
import { recordCliRun } from "./secret-scan.js";

export interface InProcessOptions {
  env: NodeJS.ProcessEnv;
  clock?: Clock;
  signal?: AbortSignal;
  stdin?: Readable;
  interactive?: boolean;
  /** Sees stderr as it is written (e.g. to read a device code while login waits). */
  onStderr?: (textSoFar: string) => void;
  /** How the CLI names itself in the configurations it prints (CliContext.self). */
  self?: CliContext["self"];
}

export async function runCliInProcess(
  argv: string[],
  options: InProcessOptions,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c) => {
    out += c;
  });
  stderr.on("data", (c) => {
    err += c;
    options.onStderr?.(err);
  });
  const ctx: CliContext = {
    env: options.env,
    stdout,
    stderr,
    stdin: options.stdin ?? new PassThrough(),
    clock: options.clock ?? systemClock,
    signal: options.signal ?? new AbortController().signal,
    interactive: options.interactive ?? false,
    ...(options.self ? { self: options.self } : {}),
  };
  const code = await main(argv, ctx);
  recordCliRun(argv, out, err, "in-process");
  return { code, stdout: out, stderr: err };
}
