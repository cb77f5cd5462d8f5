/**
 * `tokenkeeper token NAME [--min-ttl DURATION]`: a valid access token on stdout and nothing else,
 * for `curl -H "Authorization: Bearer $(tokenkeeper token NAME)"`. Errors go to stderr.
 * Exit 0 ok, 75 transient, 77 re-authorization required, 78 configuration error.
 *
 * Inside `tokenkeeper run` (TOKENKEEPER_RUN_URL and TOKENKEEPER_RUN_SECRET set) the token comes
 * from the run's own manager over its local endpoint: the store is not opened, so a run never
 * has a second refresher competing with the first.
 */

import { formatDuration } from "../../core/duration.js";
import { ConfigError, EXIT } from "../../core/errors.js";
import { assertConnectorName } from "../../core/record.js";
import { achievableMinTtlMs } from "../../manager/refresh-policy.js";
import { fetchRunToken, runEndpointFromEnv } from "../../surfaces/token-endpoint-server.js";
import { durationFlag, parseFlags, scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { openUnattended, UNATTENDED_HELP, UNATTENDED_OPTIONS } from "../unattended.js";

const USAGE = `Usage: tokenkeeper token NAME [--min-ttl DURATION] [options]

Prints a valid access token for connector NAME on stdout, and nothing else:
  curl -H "Authorization: Bearer $(tokenkeeper token NAME)" https://…

  --min-ttl DURATION      the token must stay valid at least this long (default 0: fresh by the
                          refresh-ahead policy); capped at what the server grants, with a warning
${UNATTENDED_HELP}

Inside \`tokenkeeper run\`, the token comes from the run (TOKENKEEPER_RUN_URL), not the store.
Exit codes: 0 ok, 75 transient, 77 re-authorization required, 78 configuration error.`;

export const tokenCommand = scheduledCommand({
  name: "token",
  summary: "print a valid access token (for curl and scripts)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "min-ttl": { type: "string" },
    ...UNATTENDED_OPTIONS,
  });
  if (positionals.length !== 1) throw new ConfigError("give exactly one connector NAME");
  const name = positionals[0]!;
  assertConnectorName(name);
  const minTtlMs = values["min-ttl"] === undefined ? 0 : durationFlag("--min-ttl", values["min-ttl"]);

  const run = runEndpointFromEnv(ctx.env);
  if (run) {
    const answer = await fetchRunToken(run, name, {
      clock: ctx.clock,
      minTtlMs,
      ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
    });
    ctx.stdout.write(`${answer.access_token}\n`);
    return EXIT.ok;
  }

  const session = await openUnattended(ctx, values);
  try {
    const stored = await session.store.get(name);
    const tokens = stored?.record.tokens;
    const effective = achievableMinTtlMs(tokens, minTtlMs, stored?.record.settings.refreshAheadMs);
    if (effective < minTtlMs && tokens?.expiresAt != null) {
      const lifetime = tokens.expiresAt - tokens.obtainedAt;
      ctx.stderr.write(
        `tokenkeeper: warning: "${name}" gets ${formatDuration(lifetime)} tokens from its server; --min-ttl ${formatDuration(minTtlMs)} lowered to ${formatDuration(effective)}\n`,
      );
    }
    const token = await session.manager.getAccessToken(name, { minTtlMs: effective, signal: ctx.signal });
    ctx.stdout.write(`${token.token.reveal()}\n`);
    return EXIT.ok;
  } finally {
    await session.close();
  }
}
