/**
 * `tokenkeeper token NAME [--min-ttl DURATION] [--rejected]`: a valid access token on stdout and
 * nothing else, for `curl -H "Authorization: Bearer $(tokenkeeper token NAME)"`. Errors go to
 * stderr. Exit 0 ok, 75 transient, 77 re-authorization required, 78 configuration error.
 * `--rejected` reports a token a resource server refused (read from stdin) and prints a newer one.
 *
 * Inside `tokenkeeper run` (TOKENKEEPER_RUN_URL and TOKENKEEPER_RUN_SECRET set) the token comes
 * from the run's own manager over its local endpoint: the store is not opened, so a run never
 * has a second refresher competing with the first. Where the token comes from: token-source.ts.
 *
 * `$(tokenkeeper token NAME)` waits for the process to exit, not for the token, so the command
 * must exit as soon as the token is printed. A token still good for --min-ttl but inside its
 * refresh-ahead window is therefore printed WITHOUT starting a refresh: a background refresh
 * would hold the exit up (up to a request timeout against a hung token endpoint), and cutting
 * it short is worse — with rotation, a request that has left may already have rotated the
 * refresh token at the server; dropping its answer loses the new refresh token, and the next
 * use of the old one revokes the whole grant. The refresh happens where a wait is expected: in
 * the first `token` whose --min-ttl the current token cannot meet (bounded by --timeout), and
 * ahead of time in the long-running processes (`run`, `proxy`, `keepalive`).
 */

import { EXIT } from "../../core/errors.js";
import { scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { readRejectedToken } from "../rejected-token.js";
import { tokenOutput } from "../token-output.js";
import { cliAccessToken, parseTokenArgs, printableToken, TOKEN_HELP } from "../token-source.js";

const USAGE = `Usage: tokenkeeper token NAME [--min-ttl DURATION] [--rejected] [options]

Prints a valid access token for connector NAME on stdout, and nothing else:
  curl -H "Authorization: Bearer $(tokenkeeper token NAME)" https://…

  --json                  print {"connector","access_token","token_type","expires_at"} instead
  --rejected              the server refused the token given on stdin (401): print a newer one.
                          One refresh for every process reporting the same token, none if it
                          was already replaced:
                            TOKEN=$(printf '%s' "$TOKEN" | tokenkeeper token NAME --rejected)
${TOKEN_HELP}

Inside \`tokenkeeper run\`, the token comes from the run (TOKENKEEPER_RUN_URL), not the store.
Exit codes: 0 ok, 75 transient, 77 re-authorization required, 78 configuration error.`;

export const tokenCommand = scheduledCommand({
  name: "token",
  summary: "print a valid access token (for curl and scripts)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { name, minTtlMs, flags, rejected, json } = parseTokenArgs(args, { rejectable: true });
  const { token, tokenType, expiresAt } = await cliAccessToken(
    name,
    minTtlMs,
    flags,
    ctx,
    rejected ? { rejected: await readRejectedToken(ctx) } : {},
  );
  const accessToken = printableToken(token, name);
  ctx.stdout.write(tokenOutput("token", json, { connector: name, accessToken, tokenType, expiresAt }));
  return EXIT.ok;
}
