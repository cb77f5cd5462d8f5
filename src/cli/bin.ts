#!/usr/bin/env node
/**
 * The `tokenkeeper` executable. It always runs the CLI: no "am I the entry module?" test, which
 * failed silently (exit 0, no output) through a symlink with another name, a path with a space,
 * or a wrapper script. Importing this file runs the CLI; the library never imports it.
 */
import { EXIT } from "../core/errors.js";
import { main } from "./main.js";
import { processContext } from "./process.js";

main(process.argv.slice(2), processContext()).then(
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
