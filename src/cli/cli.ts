/**
 * The full CLI as a process: main() with the real process around it, the exit code set, and a
 * guard against a stray handle keeping a cron job alive. bin.ts runs it whenever the fast path
 * (fast-token.ts) does not answer.
 */
import { EXIT } from "../core/errors.js";
import { main } from "./main.js";
import { processContext } from "./process.js";

export function runCli(argv: string[]): void {
  main(argv, processContext()).then(
    (code) => {
      process.exitCode = code;
      // Commands close their resources; this guards against a stray handle keeping a cron job alive.
      setTimeout(() => process.exit(code), 2_000).unref();
    },
    (error) => {
      process.stderr.write(
        `tokenkeeper: internal error: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      process.exit(EXIT.failure);
    },
  );
}
