#!/usr/bin/env node
/**
 * The `tokenkeeper` executable. It always runs the CLI: no "am I the entry module?" test, which
 * failed silently (exit 0, no output) through a symlink with another name, a path with a space,
 * or a wrapper script. Importing this file runs the CLI; the library never imports it.
 *
 * `token NAME` / `headers NAME` with a fresh token in the file store are answered by the fast
 * path (fast-token.ts) without loading the CLI; whenever it cannot answer, the full CLI (cli.ts)
 * runs and decides everything, errors and exit codes included. The package's `bin` is this file
 * bundled with the fast path into one CommonJS file (scripts/bundle-bin.mjs): Node 20 starts a
 * CommonJS entry markedly faster than an ES module one, and the fast path then loads nothing else.
 */
import { writeSync } from "node:fs";
import { EXIT } from "../core/errors.js";
import { fastAnswer } from "./fast-token.js";

/**
 * Straight to fd 1: creating process.stdout (a stream over a pipe) costs more startup than the
 * whole fast path. A reader that has gone (EPIPE, `… | head -0`) only means "stop writing", as
 * in process.ts; a non-blocking stdout that is full (EAGAIN) gets the rest through the stream,
 * which waits for it.
 */
function print(text: string): void {
  const bytes = Buffer.from(text);
  let offset = 0;
  try {
    while (offset < bytes.length) offset += writeSync(1, bytes, offset);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EPIPE") return;
    process.stdout.on("error", () => {});
    process.stdout.write(bytes.subarray(offset));
  }
}

const argv = process.argv.slice(2);
const answer = fastAnswer(argv, process.env);
if (answer !== null) print(answer);
else
  import("./cli.js").then(
    ({ runCli }) => runCli(argv),
    (error: unknown) => {
      process.stderr.write(
        `tokenkeeper: internal error: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      process.exitCode = EXIT.failure;
    },
  );
