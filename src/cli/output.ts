/**
 * Output helpers shared by commands: JSON on stdout for machines, readable text for people,
 * errors on stderr with their stable code. Nothing here ever prints a Secret's value.
 */
import { exitCodeFor, isTokenkeeperError } from "../core/errors.js";
import { redact, scrubText } from "../core/secret.js";
import type { CliIO } from "./context.js";

export function writeJson(io: Pick<CliIO, "stdout">, value: unknown): void {
  io.stdout.write(`${JSON.stringify(redact(value))}\n`);
}

export function writeLine(stream: NodeJS.WritableStream | CliIO["stdout"], text = ""): void {
  stream.write(`${text}\n`);
}

/** Prints an error (JSON on stdout when --json, text on stderr always) and returns its exit code. */
export function reportError(error: unknown, io: CliIO, json: boolean): number {
  const code = exitCodeFor(error);
  if (isTokenkeeperError(error)) {
    // Not through writeJson: redact() would hide the stable error `code` (an OAuth "code" is a
    // secret, our error code is not). The fields are redacted; the message is scrubbed.
    if (json) {
      const fields = redact(error.fields) as Record<string, unknown>;
      io.stdout.write(
        `${JSON.stringify({ error: { ...fields, code: error.code, message: scrubText(error.message, 1000) } })}\n`,
      );
    }
    io.stderr.write(`tokenkeeper: ${error.code}: ${scrubText(error.message, 1000)}\n`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    if (json) writeJson(io, { error: { code: "internal", message: scrubText(message) } });
    io.stderr.write(`tokenkeeper: ${scrubText(message, 1000)}\n`);
  }
  return code;
}
