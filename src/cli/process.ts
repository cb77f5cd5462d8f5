/**
 * The real process around the CLI: process streams, the system clock, signal handling, and
 * quiet handling of a closed pipe. Only bin.ts uses it; tests build their own CliContext.
 */
import { resolve } from "node:path";
import { systemClock } from "../core/clock.js";
import type { CliContext } from "./context.js";

/**
 * `tokenkeeper status | head -1`: the reader has gone, so EPIPE on our stream only means "stop
 * writing". Without a listener Node throws it as an uncaught error with a stack trace. The
 * command still finishes and exits with its own code; later writes are dropped.
 */
export function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") return;
    throw error;
  });
}

export function processContext(): CliContext {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    // A second signal means "now": leave without waiting for clean-up.
    if (signals > 1) process.exit(sig === "SIGINT" ? 130 : 143);
    // The signal's name travels on the reason so `run` can forward the same signal to its child.
    controller.abort(Object.assign(new Error(`received ${sig}`), { signal: sig }));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // The process streams are made on first use: creating one costs startup time (stdin on a pipe
  // loads the network stack), and `token` with a fresh token never reads stdin.
  let stdout: NodeJS.WriteStream | undefined;
  let stderr: NodeJS.WriteStream | undefined;
  return {
    env: process.env,
    get stdout() {
      if (!stdout) {
        stdout = process.stdout;
        quietOnClosedPipe(stdout);
      }
      return stdout;
    },
    get stderr() {
      if (!stderr) {
        stderr = process.stderr;
        quietOnClosedPipe(stderr);
      }
      return stderr;
    },
    get stdin() {
      return process.stdin;
    },
    clock: systemClock,
    signal: controller.signal,
    // The script as invoked (npm's bin link, or the file itself), made absolute; node by its own path.
    ...(process.argv[1]
      ? { self: { command: process.execPath, args: [...process.execArgv, resolve(process.argv[1])] } }
      : {}),
    get interactive() {
      return Boolean(process.stdin.isTTY && process.stderr.isTTY);
    },
  };
}
