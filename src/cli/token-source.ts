/**
 * The access token that `token` and `headers` print, and the flags they share.
 *
 * A token the store holds fresh (by the manager's own view: the same decision it makes, and for
 * a grant not known to be dead) is printed after one store read: the token manager,
 * notifications and the events log are not even loaded. (The quickest answer of all comes before
 * this module loads: bin.ts's fast path, fast-token.ts, for the file store; bench/cli-startup.ts.)
 * Anything else (a refresh due, a dead grant to report
 * and announce, a token from inside `tokenkeeper run`) takes the full path through the manager,
 * imported only then.
 */
import { formatDuration } from "../core/duration.js";
import { ConfigError, ProtocolError } from "../core/errors.js";
import { assertConnectorName } from "../core/record.js";
import { Secret } from "../core/secret.js";
import { achievableMinTtl, DEFAULT_VIEW_POLICY, freshStoredTokens } from "../manager/view.js";
import { isB64Token } from "../oauth/token-response.js";
import { durationFlag, type FlagOptions, parseFlags } from "./args.js";
import type { CliContext } from "./context.js";
import { openCliStore } from "./runtime.js";
import { UNATTENDED_HELP, UNATTENDED_OPTIONS, type UnattendedFlags } from "./unattended-flags.js";

export const TOKEN_OPTIONS = {
  "min-ttl": { type: "string" },
  json: { type: "boolean" },
  ...UNATTENDED_OPTIONS,
} as const satisfies FlagOptions;

/** `token` alone also takes --rejected (see rejected-token.ts). */
const REJECTABLE_OPTIONS = { ...TOKEN_OPTIONS, rejected: { type: "boolean" } } as const satisfies FlagOptions;

export const TOKEN_HELP = `  --min-ttl DURATION      the token must stay valid at least this long (default 0: fresh by the
                          refresh-ahead policy); capped at what the server grants, with a warning
${UNATTENDED_HELP}`;

/** The one connector NAME and the flags of `token`/`headers`. */
export function parseTokenArgs(
  args: string[],
  { rejectable = false }: { rejectable?: boolean } = {},
): { name: string; minTtlMs: number; flags: UnattendedFlags; rejected: boolean; json: boolean } {
  const { values, positionals } = rejectable
    ? parseFlags(args, REJECTABLE_OPTIONS)
    : parseFlags(args, TOKEN_OPTIONS);
  if (positionals.length !== 1) throw new ConfigError("give exactly one connector NAME");
  const name = positionals[0]!;
  assertConnectorName(name);
  const minTtlMs = values["min-ttl"] === undefined ? 0 : durationFlag("--min-ttl", values["min-ttl"]);
  // Checked here too: a fresh token never reaches the manager, and a bad flag must not pass unseen.
  if (values.timeout !== undefined) durationFlag("--timeout", values.timeout);
  const rejected = "rejected" in values && values.rejected === true;
  const { json, ...flags } = values;
  return { name, minTtlMs, flags, rejected, json: json === true };
}

/** A token to print, with what `token --json` reports beside it. */
export interface CliToken {
  token: Secret;
  tokenType: string;
  /** Epoch ms by the local clock (skew-corrected); null when the server gave no lifetime. */
  expiresAt: number | null;
}

/**
 * The token to print. With `rejected` (a token a resource server refused): a token other than
 * that one, through the manager's one-refresh path for rejections.
 */
export async function cliAccessToken(
  name: string,
  minTtlMs: number,
  flags: UnattendedFlags,
  ctx: CliContext,
  { rejected }: { rejected?: Secret } = {},
): Promise<CliToken> {
  if (ctx.env.TOKENKEEPER_RUN_URL) {
    // Inside `tokenkeeper run`: the run's manager is the only refresher; the store is not opened.
    const { fetchRunToken, runEndpointFromEnv } = await import("../surfaces/token-endpoint-server.js");
    const run = runEndpointFromEnv(ctx.env);
    if (run) {
      const answer = await fetchRunToken(run, name, {
        clock: ctx.clock,
        minTtlMs,
        // The documented bound on the whole wait holds here too (else the endpoint's own 45 s).
        ...(flags.timeout !== undefined ? { timeoutMs: durationFlag("--timeout", flags.timeout) } : {}),
        ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
        ...(rejected ? { rejected } : {}),
      });
      return {
        token: new Secret(answer.access_token),
        tokenType: answer.token_type,
        expiresAt: answer.expires_at === null ? null : Date.parse(answer.expires_at),
      };
    }
  }

  const store = await openCliStore(flags.store, ctx);
  let effective = minTtlMs;
  try {
    const stored = await store.get(name);
    const record = stored?.record;
    const tokens = record?.tokens;
    // The policy of the manager this command would create: the same decision it would make.
    effective = achievableMinTtl(record, minTtlMs, DEFAULT_VIEW_POLICY);
    if (effective < minTtlMs && tokens?.expiresAt != null) {
      const lifetime = tokens.expiresAt - tokens.obtainedAt;
      ctx.stderr.write(
        `tokenkeeper: warning: "${name}" gets ${formatDuration(lifetime)} tokens from its server; --min-ttl ${formatDuration(minTtlMs)} lowered to ${formatDuration(effective)}\n`,
      );
    }
    const fresh = rejected
      ? null
      : freshStoredTokens(record, ctx.clock.now(), effective, DEFAULT_VIEW_POLICY);
    if (fresh) return { token: fresh.accessToken, tokenType: fresh.tokenType, expiresAt: fresh.expiresAt };
  } finally {
    await store.close();
  }

  const { openUnattended } = await import("./unattended.js");
  // One-shot: a token still good for --min-ttl is printed without starting a refresh that
  // would hold the exit up (see the note in commands/token.ts).
  const session = await openUnattended(ctx, flags, { oneShot: true });
  try {
    // Once for every reporter of the same token, across processes; none if the store moved on.
    if (rejected) await session.manager.refreshAfterRejection(name, rejected, { signal: ctx.signal });
    const token = await session.manager.getAccessToken(name, { minTtlMs: effective, signal: ctx.signal });
    return { token: token.token, tokenType: token.tokenType, expiresAt: token.expiresAt };
  } finally {
    await session.close();
  }
}

/**
 * The token's value for a header (`curl -H "Authorization: Bearer $(tokenkeeper token NAME)"`,
 * a headersHelper): a CR/LF or space in it would add a header or split the word. Tokens are
 * validated when they arrive; one stored by an older version or a store writer is checked
 * again here, the last step before a shell or an HTTP client sees it.
 */
export function printableToken(token: Secret, name: string): string {
  const value = token.reveal();
  if (!isB64Token(value))
    throw new ProtocolError(
      `the access token of "${name}" has characters outside RFC 6750 §2.1's b64token set; refusing to print it (run \`tokenkeeper login\` again)`,
      { connector: name, field: "access_token", problem: "invalid_token_characters" },
    );
  return value;
}
