/**
 * The CLI's dispatcher: `main(argv, ctx)` finds one command, loads it, runs it. Every failure
 * leaves through exitCodeFor(), so scripts can rely on the documented exit codes. The process
 * around it (streams, signals, exit) is bin.ts; tests call main() in-process.
 *
 * Arguments after `--` belong to the command (`run -- du -h FILE`): nothing here looks past it.
 */
import { EXIT } from "../core/errors.js";
import { commands } from "./commands.js";
import type { CliContext, Command } from "./context.js";
import { reportError } from "./output.js";

import { VERSION } from "./version.js";

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

/** The command's own options: everything before a `--` (after it come another program's words). */
export function optionWords(args: string[]): string[] {
  const end = args.indexOf("--");
  return end === -1 ? args : args.slice(0, end);
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
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    ctx.stderr.write(`tokenkeeper: unknown command "${name}"\n\n${help()}\n`);
    return EXIT.usage;
  }
  const options = optionWords(rest);
  let command: Command | undefined;
  try {
    command = await entry.load();
    if (options.includes("--help") || options.includes("-h")) {
      ctx.stdout.write(`${command.usage}\n`);
      return EXIT.ok;
    }
    return await command.run(rest, ctx);
  } catch (error) {
    return reportError(error, ctx, options.includes("--json") && !command?.stdoutOnlyOnSuccess);
  }
}
