/**
 * Token revocation (RFC 7009), used by `logout --revoke`. Revoking the refresh token ends the
 * grant (§2.1: the server SHOULD then invalidate the access tokens issued from it); the access
 * token is revoked as well when it may still be live, for servers that do not cascade.
 */
import * as oauth from "oauth4webapi";
import type { Clock } from "../core/clock.js";
import { TransientError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { scrubText } from "../core/secret.js";
import {
  assertSecureUrl,
  boundedFetch,
  describeUrl,
  type FetchLike,
  isLoopbackHost,
  parseRetryAfter,
} from "./http.js";
import { SentSecrets } from "./sent-secrets.js";
import { oauthClientFor } from "./token-endpoint.js";

export interface RevocationDeps {
  clock: Clock;
  fetch?: FetchLike;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export type TokenKind = "refresh_token" | "access_token";

export interface RevocationOutcome {
  /** Which token (named so that JSON redaction, which hides any "token" field, leaves it readable). */
  tokenType: TokenKind;
  revoked: boolean;
  /** Why not, when not: a stable word plus a readable detail. */
  reason?: "no_endpoint" | "refused" | "unreachable" | "unsupported_token_type";
  detail?: string;
}

/** The tokens worth revoking, most important first. */
export function tokensToRevoke(record: ConnectorRecord, now: number): TokenKind[] {
  const out: TokenKind[] = [];
  if (record.tokens?.refreshToken) out.push("refresh_token");
  if (record.tokens && (record.tokens.expiresAt === null || record.tokens.expiresAt > now))
    out.push("access_token");
  return out;
}

/** Revokes one token. Never throws for a server's refusal or absence: the outcome says what happened. */
export async function revokeToken(
  record: ConnectorRecord,
  kind: TokenKind,
  deps: RevocationDeps,
): Promise<RevocationOutcome> {
  const endpoint = record.server.metadata.revocation_endpoint;
  if (typeof endpoint !== "string") {
    return {
      tokenType: kind,
      revoked: false,
      reason: "no_endpoint",
      detail: `${record.server.issuer} advertises no revocation_endpoint`,
    };
  }
  const token = kind === "refresh_token" ? record.tokens?.refreshToken : record.tokens?.accessToken;
  if (!token) return { tokenType: kind, revoked: false, reason: "refused", detail: `no ${kind} to revoke` };
  const url = assertSecureUrl(endpoint, "revocation_endpoint");
  const where = describeUrl(url);
  const ctx = oauthClientFor(record);
  const http = boundedFetch({
    clock: deps.clock,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.timeoutMs ? { timeoutMs: deps.timeoutMs } : {}),
  });
  // A server that refuses may quote the token back, and a refused refresh token is still live.
  const sent = new SentSecrets().add(token.reveal(), record.client.clientSecret?.reveal());
  let response: Response;
  try {
    response = await oauth.revocationRequest(ctx.as, ctx.client, ctx.auth, token.reveal(), {
      additionalParameters: { token_type_hint: kind },
      [oauth.customFetch]: (u, init) => {
        sent.noteRequest(init as RequestInit);
        return http(u, init as RequestInit);
      },
      ...(url.protocol === "http:" && isLoopbackHost(url.hostname)
        ? { [oauth.allowInsecureRequests]: true }
        : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
  } catch (error) {
    return {
      tokenType: kind,
      revoked: false,
      reason: "unreachable",
      detail: error instanceof Error ? scrubText(error.message, 200) : String(error),
    };
  }
  if (response.status >= 500 || response.status === 429) {
    // RFC 7009 §2.2.1: 503 means "try later"; the grant is still alive.
    const retry = parseRetryAfter(response.headers.get("retry-after"), deps.clock.now());
    const error = new TransientError(`${where} answered ${response.status}`, {
      url: where,
      status: response.status,
      ...(retry ? { retryAfterMs: retry } : {}),
    });
    return { tokenType: kind, revoked: false, reason: "unreachable", detail: error.message };
  }
  try {
    await oauth.processRevocationResponse(response);
    // §2.2: 200 also for a token that was already invalid — either way it no longer works.
    return { tokenType: kind, revoked: true };
  } catch (cause) {
    const detail =
      cause instanceof oauth.ResponseBodyError
        ? `${sent.scrub(cause.error, 64)}${cause.error_description ? `: ${sent.scrub(cause.error_description, 200)}` : ""}`
        : `${where} answered ${response.status}`;
    // §2.2.1: the server cannot revoke this kind of token (typically a self-contained JWT access
    // token, which stays valid until it expires). Not a failure of the logout.
    if (cause instanceof oauth.ResponseBodyError && cause.error === "unsupported_token_type") {
      return { tokenType: kind, revoked: false, reason: "unsupported_token_type", detail };
    }
    return { tokenType: kind, revoked: false, reason: "refused", detail };
  }
}

/**
 * Whether the grant is over: the refresh token (or, without one, the access token) was revoked.
 * An access token the server cannot revoke (unsupported_token_type) does not count against it.
 */
export function grantRevoked(outcomes: RevocationOutcome[]): boolean {
  const primary = outcomes[0];
  if (!primary?.revoked) return false;
  return outcomes.slice(1).every((o) => o.revoked || o.reason === "unsupported_token_type");
}

/** Revokes the refresh token, then the access token when it may still be live. */
export async function revokeGrant(
  record: ConnectorRecord,
  deps: RevocationDeps,
): Promise<RevocationOutcome[]> {
  const outcomes: RevocationOutcome[] = [];
  for (const kind of tokensToRevoke(record, deps.clock.now())) {
    const outcome = await revokeToken(record, kind, deps);
    outcomes.push(outcome);
    if (outcome.reason === "no_endpoint") break;
  }
  return outcomes;
}
