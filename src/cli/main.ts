#!/usr/bin/env node
/**
 * The `tokenkeeper` entry point: builds the real context (process streams, system clock,
 * signal handling) and dispatches to one command. Every failure leaves through exitCodeFor(),
 * so scripts can rely on the documented exit codes.
 */
import { systemClock } from "../core/clock.js";
import { EXIT } from "../core/errors.js";
import { commands } from "./commands.js";
import type { CliContext } from "./context.js";
import { reportError } from "./output.js";

const VERSION = "0.1.0";

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "tokenkeeper — keeps OAuth tokens for remote MCP servers fresh for unattended runs",
    "",
    "Usage: tokenkeeper <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Global: --store URL (or TOKENKEEPER_STORE), TOKENKEEPER_HOME for the file store.",
    "Run `tokenkeeper <command> --help` for a command's options. Exit codes: 0 ok, 64 usage,",
    "74 store I/O, 75 transient (try later), 76 protocol, 77 re-authorization required, 78 configuration.",
  ].join("\n");
}

export async function main(argv: string[], ctx: CliContext): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    ctx.stdout.write(`${help()}\n`);
    return name ? EXIT.ok : EXIT.usage;
  }
  if (name === "--version" || name === "-V") {
    ctx.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    ctx.stderr.write(`tokenkeeper: unknown command "${name}"\n\n${help()}\n`);
    return EXIT.usage;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    ctx.stdout.write(`${command.usage}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run(rest, ctx);
  } catch (error) {
    return reportError(error, ctx, rest.includes("--json"));
  }
}

function processContext(): CliContext {
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
  return {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    clock: systemClock,
    signal: controller.signal,
    interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
  };
}

const isEntry = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/tokenkeeper");
if (isEntry) {
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
}
