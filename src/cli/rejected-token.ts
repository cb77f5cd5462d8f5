/**
 * `token --rejected`: the access token a resource server refused, read from stdin. Not an
 * argument: a command line is visible to every user of the machine (ps), stdin is not. The
 * token identifies the rejection, so every reporter of the same token shares one refresh and a
 * token the store already replaced causes none (TokenManager.refreshAfterRejection).
 *
 *   printf '%s' "$TOKEN" | tokenkeeper token NAME --rejected
 *
 * Bounded: at most MAX_BYTES, and stdin must end within READ_TIMEOUT_MS (a parent that keeps the
 * pipe open must not hang a scheduled job).
 */
import { timeoutSignal } from "../core/clock.js";
import { Secret } from "../core/secret.js";
import { isB64Token } from "../oauth/token-response.js";
import { UsageError } from "./args.js";
import type { CliContext } from "./context.js";

const MAX_BYTES = 16 * 1024;
const READ_TIMEOUT_MS = 5_000;
const HOW = `pipe the refused token in: printf '%s' "$TOKEN" | tokenkeeper token NAME --rejected`;

export async function readRejectedToken(ctx: Pick<CliContext, "stdin" | "clock">): Promise<Secret> {
  const stdin = ctx.stdin as CliContext["stdin"] & { isTTY?: boolean };
  if (stdin.isTTY) throw new UsageError(`--rejected reads the token from stdin, not a terminal; ${HOW}`);
  const text = await readBounded(ctx);
  // RFC 6750 §2.1: b64token characters only; whitespace around it (a trailing newline) is fine.
  const token = text.trim();
  if (!token) throw new UsageError(`--rejected got no token on stdin; ${HOW}`);
  if (!isB64Token(token))
    throw new UsageError("--rejected: stdin does not hold one bearer token (RFC 6750 characters only)");
  return new Secret(token);
}

function readBounded(ctx: Pick<CliContext, "stdin" | "clock">): Promise<string> {
  const { stdin } = ctx;
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = timeoutSignal(ctx.clock, READ_TIMEOUT_MS);
    const finish = (error: Error | undefined) => {
      timer.dispose();
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.off("error", onError);
      stdin.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).toString("utf8"));
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > MAX_BYTES) finish(new UsageError(`--rejected: more than ${MAX_BYTES} bytes on stdin`));
      else chunks.push(buf);
    };
    const onEnd = () => finish(undefined);
    const onError = (error: Error) =>
      finish(new UsageError(`--rejected: cannot read stdin (${error.message})`));
    timer.signal.addEventListener(
      "abort",
      () => finish(new UsageError(`--rejected: stdin did not end within ${READ_TIMEOUT_MS / 1000}s; ${HOW}`)),
      { once: true },
    );
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.once("error", onError);
    stdin.resume();
  });
}
