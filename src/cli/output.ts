/**
 * Output helpers shared by commands: JSON on stdout for machines, readable text for people,
 * errors on stderr with their stable code. Nothing here ever prints a Secret's value.
 */
import { errorJson, exitCodeFor, isTokenkeeperError } from "../core/errors.js";
import { redact, scrubText } from "../core/secret.js";
import { toWire } from "../core/wire-json.js";
import type { CliIO } from "./context.js";

export function writeJson(io: Pick<CliIO, "stdout">, value: unknown): void {
  io.stdout.write(`${JSON.stringify(redact(value))}\n`);
}

/**
 * A command's --json output in the one documented dialect: snake_case keys, ISO-8601 UTC times
 * (core/wire-json.ts). Not for documents whose shape belongs to someone else (client configs).
 */
export function writeWireJson(io: Pick<CliIO, "stdout">, value: unknown): void {
  writeJson(io, toWire(redact(value)));
}

export function writeLine(stream: NodeJS.WritableStream | CliIO["stdout"], text = ""): void {
  stream.write(`${text}\n`);
}

/** Prints an error (JSON on stdout when --json, text on stderr always) and returns its exit code. */
export function reportError(error: unknown, io: CliIO, json: boolean): number {
  // Not through writeJson: redact() would hide the stable error `code`; errorJson redacts the fields.
  if (json) io.stdout.write(`${JSON.stringify({ error: toWire(errorJson(error)) })}\n`);
  if (isTokenkeeperError(error)) {
    io.stderr.write(`tokenkeeper: ${error.code}: ${scrubText(error.message, 1000)}\n`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`tokenkeeper: ${scrubText(message, 1000)}\n`);
  }
  return exitCodeFor(error);
}
