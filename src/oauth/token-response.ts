/**
 * Pure conversions from a validated token-endpoint response to Tokenkeeper's TokenSet.
 * `expires_in` (and a JWT's `exp`) become one absolute, skew-corrected `expiresAt` at the instant
 * the response arrived, so a token set read back from the store later means the same thing, and
 * every consumer (manager, status, ensure, run, proxy, SDK provider) decides by the same value.
 */
import { ProtocolError } from "../core/errors.js";
import { peekJwtClaims } from "../core/jwt.js";
import type { TokenSet } from "../core/record.js";
import { isValidScope } from "../core/scope.js";
import { Secret } from "../core/secret.js";

/**
 * The longest access-token lifetime Tokenkeeper believes. A server that says `expires_in`
 * 1e13 means "long"; storing it literally would put the expiry past the largest date a
 * program can print. Longer lifetimes are cut to this: the token is refreshed a year early.
 */
export const MAX_ACCESS_TOKEN_LIFETIME_S = 366 * 86_400;
/** The same bound for a refresh token's stated lifetime (non-standard refresh_token_expires_in). */
export const MAX_REFRESH_TOKEN_LIFETIME_S = 10 * 366 * 86_400;
/** Far above real tokens (large JWTs are a few KiB); bounds what is stored and sent in headers. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** Whether `token` can go into an Authorization header as is (RFC 6750 §2.1 b64token, bounded). */
export function isB64Token(token: string): boolean {
  return token.length <= MAX_TOKEN_LENGTH && B64TOKEN.test(token);
}

/** RFC 6749 Appendix A.17: refresh-token = 1*VSCHAR (%x20-7E). */
const VSCHARS = /^[\x20-\x7E]+$/;

/**
 * A complete answer from the token endpoint that is not a usable token response. It is the
 * server's verdict, not a network accident: the request is not sent again with the same
 * credentials (a server that rotated the refresh token before answering would take a second
 * use as reuse and revoke the grant).
 */
export class InvalidTokenResponseError extends ProtocolError {
  constructor(where: string, status: number, detail: string) {
    super(`${where} sent an invalid token response (HTTP ${status}): ${detail}`, {
      url: where,
      status,
      problem: "invalid_token_response",
      detail,
    });
  }
}

/**
 * What is wrong with a token response that oauth4webapi accepted, or undefined when nothing is.
 * Never quotes the server's values (they are unvalidated text and may hold secrets).
 */
export function tokenResponseProblem(response: TokenResponseLike): string | undefined {
  const type = typeof response.token_type === "string" ? response.token_type.toLowerCase() : undefined;
  if (type === "dpop")
    return "token_type is DPoP: the token is bound to a proof-of-possession key (RFC 9449), which Tokenkeeper does not support, so it could not be used; configure the client or server for Bearer tokens";
  if (type !== "bearer")
    return `token_type ${type === undefined ? "is missing or not a string" : /^[a-z0-9_.-]{1,20}$/.test(type) ? `"${type}" is not Bearer` : "is not Bearer"} (Tokenkeeper uses Bearer tokens, RFC 6750)`;
  if (typeof response.access_token !== "string" || response.access_token.length === 0)
    return "access_token is missing";
  if (response.access_token.length > MAX_TOKEN_LENGTH)
    return `access_token is longer than ${MAX_TOKEN_LENGTH} characters`;
  if (!B64TOKEN.test(response.access_token))
    return "access_token has characters outside RFC 6750 §2.1's b64token set (it could not be sent in an Authorization header safely)";
  if (response.refresh_token !== undefined) {
    if (typeof response.refresh_token !== "string" || response.refresh_token.length === 0)
      return "refresh_token is empty or not a string";
    if (response.refresh_token.length > MAX_TOKEN_LENGTH)
      return `refresh_token is longer than ${MAX_TOKEN_LENGTH} characters`;
    if (!VSCHARS.test(response.refresh_token))
      return "refresh_token has characters outside printable ASCII (RFC 6749 Appendix A.17)";
  }
  if (response.expires_in !== undefined) {
    const e = response.expires_in;
    if (typeof e !== "number" || !Number.isFinite(e)) return "expires_in is not a number";
    if (e <= 0) return "expires_in is not positive (a token that is already expired cannot be used)";
  }
  // An empty scope is read as no scope (some servers send ""), not as an invalid one.
  if (
    response.scope !== undefined &&
    (typeof response.scope !== "string" || (response.scope.trim() !== "" && !isValidScope(response.scope)))
  )
    return "scope is not a valid OAuth scope (RFC 6749 §3.3)";
  return undefined;
}

export interface TokenResponseLike {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  /** Non-standard but common (e.g. some providers send it): the refresh token's lifetime in seconds. */
  refresh_token_expires_in?: unknown;
}

export interface TokenSetInput {
  response: TokenResponseLike;
  /** Local time the response arrived (epoch ms). */
  receivedAt: number;
  /** The token set being replaced, for carrying over a refresh token the server did not rotate. */
  previous?: TokenSet | null;
  /** Server clock minus local clock (ms), if measured (see effectiveExpiry). */
  skewMs?: number;
  /** The refresh token's absolute lifetime from first issue, when configured (ms). */
  refreshTokenLifetimeMs?: number;
  /** Scope requested, used when the server omits `scope` (RFC 6749 §5.1: then it equals the request). */
  requestedScope?: string;
  /** Names the response's origin in an InvalidTokenResponseError (default "the token endpoint"). */
  where?: string;
  /** The HTTP status of the response, for the same error (default 200). */
  status?: number;
}

/**
 * Validates (tokenResponseProblem: refuses with InvalidTokenResponseError) and converts. Every
 * path that stores tokens from a server comes through here, so nothing unvalidated is stored.
 */
export function tokenSetFromResponse(input: TokenSetInput): { tokens: TokenSet; rotated: boolean } {
  const { response, receivedAt, previous } = input;
  const problem = tokenResponseProblem(response);
  if (problem)
    throw new InvalidTokenResponseError(input.where ?? "the token endpoint", input.status ?? 200, problem);
  const expiresIn =
    typeof response.expires_in === "number"
      ? Math.min(response.expires_in, MAX_ACCESS_TOKEN_LIFETIME_S)
      : undefined;
  const expiry = effectiveExpiry({
    receivedAt,
    ...(expiresIn !== undefined ? { expiresInS: expiresIn } : {}),
    ...jwtExp(response.access_token),
    ...(input.skewMs !== undefined ? { skewMs: input.skewMs } : {}),
  });
  // A JWT `exp` or a Date header can be anything: whatever they say, the stored times stay
  // within [epoch, arrival + MAX_ACCESS_TOKEN_LIFETIME_S], dates every program can print.
  const bound = (t: number | null) =>
    t === null ? null : Math.max(0, Math.min(t, receivedAt + MAX_ACCESS_TOKEN_LIFETIME_S * 1000));
  const expiresAt = bound(expiry.expiresAt);
  const grantedExpiresAt = bound(expiry.grantedExpiresAt);

  const newRefresh = response.refresh_token ? new Secret(response.refresh_token) : undefined;
  // RFC 6749 §6: the server MAY issue a new refresh token; if it does not, the old one stays valid.
  const refreshToken = newRefresh ?? previous?.refreshToken;
  const rotated = Boolean(newRefresh && previous?.refreshToken && !newRefresh.equals(previous.refreshToken));
  const freshRefresh = Boolean(newRefresh && !newRefresh.equals(previous?.refreshToken));
  const refreshTokenIssuedAt = freshRefresh ? receivedAt : previous?.refreshTokenIssuedAt;

  // The refresh token's absolute expiry: from a non-standard `refresh_token_expires_in` when the
  // server sends one; else carried across rotation (providers with an absolute lifetime keep the
  // grant's original expiry); else from a configured lifetime counted from this issue.
  let refreshTokenExpiresAt: number | null | undefined = previous?.refreshTokenExpiresAt;
  const rtIn = response.refresh_token_expires_in;
  if (freshRefresh && typeof rtIn === "number" && Number.isFinite(rtIn) && rtIn > 0) {
    refreshTokenExpiresAt = receivedAt + Math.floor(Math.min(rtIn, MAX_REFRESH_TOKEN_LIFETIME_S) * 1000);
  } else if (refreshTokenExpiresAt == null && input.refreshTokenLifetimeMs !== undefined) {
    refreshTokenExpiresAt = (refreshTokenIssuedAt ?? receivedAt) + input.refreshTokenLifetimeMs;
  }

  const tokens: TokenSet = {
    accessToken: new Secret(response.access_token),
    tokenType: normalizeTokenType(response.token_type),
    expiresAt,
    obtainedAt: receivedAt,
  };
  if (grantedExpiresAt !== null) tokens.grantedExpiresAt = grantedExpiresAt;
  if (refreshToken) tokens.refreshToken = refreshToken;
  const granted = response.scope?.split(" ").filter(Boolean).join(" ") || undefined;
  const scope = granted ?? previous?.scope ?? input.requestedScope;
  if (scope !== undefined) tokens.scope = scope;
  if (refreshToken && refreshTokenIssuedAt !== undefined) tokens.refreshTokenIssuedAt = refreshTokenIssuedAt;
  if (refreshToken && refreshTokenExpiresAt !== undefined)
    tokens.refreshTokenExpiresAt = refreshTokenExpiresAt;
  return { tokens, rotated };
}

function jwtExp(accessToken: string): { jwtExpS?: number } {
  const exp = peekJwtClaims(accessToken)?.exp;
  return exp !== undefined ? { jwtExpS: exp } : {};
}

export interface ExpiryInput {
  /** Local time the response arrived (epoch ms). */
  receivedAt: number;
  /** `expires_in` as the server sent it (seconds): a lifetime, the same on every clock. */
  expiresInS?: number;
  /** The access token's `exp` claim, when it is a JWT (epoch seconds by the AS's clock; not verified). */
  jwtExpS?: number;
  /** The AS's clock minus ours (ms), as measured on this response; unknown counts as 0. */
  skewMs?: number;
}

/** Skews smaller than this are within what estimateClockSkew can resolve: treated as none. */
export const SKEW_RESOLUTION_MS = 2_000;

/** Corrections smaller than this are within the skew measurement's resolution: not worth showing. */
const DISPLAY_RESOLUTION_MS = 1_000;

/**
 * When the access token stops working, by our clock: the earliest moment any plausible resource
 * server (RS) would reject it. `grantedExpiresAt` is what the server stated (arrival plus
 * `expires_in`), kept for display when the correction moved the expiry earlier by a second or more.
 *
 * The RS judges `exp` by its own clock, and we cannot know whose clock that agrees with:
 *  (a) the AS's (one operator, one time source): the token lives `expires_in` from issue,
 *      i.e. until `receivedAt + expires_in` on our clock, or `exp - skew` converted to it;
 *  (b) ours (the AS's clock is the wrong one): the RS compares the AS's numbers with our time,
 *      so the token dies when our clock reads `exp` (or, without a JWT, the AS's issue time plus
 *      `expires_in`, `receivedAt + skew + expires_in`).
 * (a) is earlier when the AS is ahead (skew > 0), (b) when it is behind: a token from an AS 65 s
 * behind dies 65 s early at an RS on our clock. We take the earliest of all of them, so the
 * guarantee holds in both cases; the price is |skew| of lifetime when the guess was pessimistic.
 * A token whose earliest expiry is not after its arrival is dead on arrival (the lifetime is
 * shorter than the skew): the manager reports that as a typed error instead of refreshing again.
 */
export function effectiveExpiry(input: ExpiryInput): {
  expiresAt: number | null;
  grantedExpiresAt: number | null;
} {
  // A skew inside the measurement's resolution (Date header and iat are whole seconds, plus half
  // a round trip) is noise, not a clock error: correcting by it would only shave lifetime.
  const skew = Math.abs(input.skewMs ?? 0) < SKEW_RESOLUTION_MS ? 0 : (input.skewMs ?? 0);
  const candidates: number[] = [];
  let granted: number | null = null;
  if (input.expiresInS !== undefined) {
    granted = input.receivedAt + Math.floor(input.expiresInS * 1000);
    candidates.push(granted, granted + skew);
  }
  if (input.jwtExpS !== undefined) {
    const exp = input.jwtExpS * 1000;
    granted ??= exp - skew;
    candidates.push(exp - skew, exp);
  }
  if (candidates.length === 0 || granted === null) return { expiresAt: null, grantedExpiresAt: null };
  const expiresAt = Math.min(...candidates);
  return {
    expiresAt,
    grantedExpiresAt: granted - expiresAt >= DISPLAY_RESOLUTION_MS ? granted : null,
  };
}

/**
 * Dead on arrival: the skew correction (not the server's stated lifetime) put the expiry at or
 * before the moment the token arrived.
 */
export function expiredOnArrival(
  tokens: Pick<TokenSet, "expiresAt" | "obtainedAt" | "grantedExpiresAt">,
): boolean {
  return (
    tokens.grantedExpiresAt !== undefined &&
    tokens.expiresAt !== null &&
    tokens.expiresAt <= tokens.obtainedAt
  );
}

function normalizeTokenType(t: string): string {
  return t.toLowerCase() === "bearer" ? "Bearer" : t.toLowerCase() === "dpop" ? "DPoP" : t;
}

/**
 * Estimates server-minus-local clock offset from the HTTP Date header (1 s resolution) and the
 * JWT `iat` (1 s resolution). The local reference is the midpoint of the request, which bounds
 * the error by half the round trip plus a second of truncation. Returns undefined when the
 * server gave nothing usable.
 */
export function estimateClockSkew(input: {
  sentAt: number;
  receivedAt: number;
  dateHeader?: string | null;
  accessToken?: string;
}): number | undefined {
  const mid = (input.sentAt + input.receivedAt) / 2;
  const samples: number[] = [];
  if (input.dateHeader) {
    const at = Date.parse(input.dateHeader);
    // Date has second resolution and is truncated: the true server time is in [at, at+1000).
    if (!Number.isNaN(at)) samples.push(at + 500 - mid);
  }
  const iat = input.accessToken ? peekJwtClaims(input.accessToken)?.iat : undefined;
  if (iat !== undefined) samples.push(iat * 1000 + 500 - mid);
  if (samples.length === 0) return undefined;
  // Prefer the Date header (it is the response's own time); iat may be cached or reused.
  return Math.round(samples[0]!);
}
