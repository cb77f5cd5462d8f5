/**
 * `tokenkeeper headers NAME`: the HTTP headers for connector NAME's MCP server as one JSON
 * object, `{"Authorization":"Bearer …"}`, for clients that run a command to get their headers
 * (Claude Code's `headersHelper`, run at every connection and reconnection). Same token, same
 * exit codes as `token`; nothing on stdout unless it succeeded, so a client never sends a
 * half-written header.
 */

import { EXIT } from "../../core/errors.js";
import { scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { tokenOutput } from "../token-output.js";
import { cliAccessToken, parseTokenArgs, printableToken, TOKEN_HELP } from "../token-source.js";

const USAGE = `Usage: tokenkeeper headers NAME [--min-ttl DURATION] [options]

Prints the headers for connector NAME's MCP server as a JSON object, and nothing else:
  {"Authorization":"Bearer …"}
For Claude Code's "headersHelper" (\`tokenkeeper proxy NAME --print-config --client claude-code\`
prints the configuration that uses it).

${TOKEN_HELP}

Exit codes: 0 ok, 75 transient, 77 re-authorization required, 78 configuration error.`;

export const headersCommand = scheduledCommand({
  name: "headers",
  summary: "print the Authorization header as JSON (for Claude Code's headersHelper)",
  usage: USAGE,
  run,
  stdoutOnlyOnSuccess: true,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { name, minTtlMs, flags } = parseTokenArgs(args);
  const { token, tokenType, expiresAt } = await cliAccessToken(name, minTtlMs, flags, ctx);
  const accessToken = printableToken(token, name);
  ctx.stdout.write(tokenOutput("headers", false, { connector: name, accessToken, tokenType, expiresAt }));
  return EXIT.ok;
}
