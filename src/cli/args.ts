/**
 * Reading a command line, and answering a bad one. The answer depends on who runs the command
 * (README, "Exit codes"):
 *   - an interactive command (login, logout, doctor, store, proxy, config, import) tells the person what is wrong,
 *     with its usage, on stderr, and exits 64;
 *   - a scheduler-facing command (token, headers, status, ensure, run, keepalive) fails with a configuration
 *     error, exit 78: a job's command line is its configuration, so a scheduler only ever sees 0,
 *     75, 77 or 78.
 * A command states its policy once, where it is declared (interactiveCommand, scheduledCommand);
 * inside, a bad command line is simply a thrown UsageError.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { parseDuration } from "../core/duration.js";
import { ConfigError, EXIT } from "../core/errors.js";
import type { CliContext, Command } from "./context.js";

export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

export type ParsedFlags<O extends FlagOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>
>;

/** A bad command line. Not a TokenkeeperError: the command's policy decides its exit code. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** parseArgs, strict; every mistake in the arguments a UsageError with parseArgs' own explanation. */
export function parseFlags<O extends FlagOptions>(
  args: string[],
  options: O,
  { positionals = true }: { positionals?: boolean } = {},
): ParsedFlags<O> {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true }) as ParsedFlags<O>;
  } catch (error) {
    if (!(error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) throw error;
    throw new UsageError((error as Error).message);
  }
}

/** A duration flag's value; one that does not parse is a configuration error (exit 78). */
export function durationFlag(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch {
    // A usage mistake: interactive commands answer 64, scheduler-facing ones 78 (their wrapper).
    throw new UsageError(
      `${flag} ${JSON.stringify(value.slice(0, 40))} is not a duration (examples: 30s, 5m, 1h30m, 2d)`,
    );
  }
}

/** An interactive command: a bad command line is answered on stderr with the usage, exit 64. */
export function interactiveCommand(command: Command): Command {
  return answeringUsageErrors(command, (error, ctx) => {
    ctx.stderr.write(`tokenkeeper ${command.name}: ${error.message}\n\n${command.usage}\n`);
    return EXIT.usage;
  });
}

/** A scheduler-facing command: a bad command line is a ConfigError (exit 78) naming the command. */
export function scheduledCommand(command: Command): Command {
  return answeringUsageErrors(command, (error) => {
    throw new ConfigError(`tokenkeeper ${command.name}: ${error.message} (see --help)`);
  });
}

function answeringUsageErrors(
  command: Command,
  answer: (error: UsageError, ctx: CliContext) => number,
): Command {
  return {
    ...command,
    async run(args, ctx) {
      try {
        return await command.run(args, ctx);
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        return answer(error, ctx);
      }
    },
  };
}
