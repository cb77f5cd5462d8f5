/**
 * Pure conversions from a validated token-endpoint response to Tokenkeeper's TokenSet.
 * `expires_in` becomes an absolute `expiresAt` at the instant the response arrived, so
 * a token set read back from the store later means the same thing.
 */
import { peekJwtClaims } from "../core/jwt.js";
import type { TokenSet } from "../core/record.js";
import { Secret } from "../core/secret.js";

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
  /** Server clock minus local clock (ms), if measured: used only for absolute server timestamps. */
  skewMs?: number;
  /** The refresh token's absolute lifetime from first issue, when configured (ms). */
  refreshTokenLifetimeMs?: number;
  /** Scope requested, used when the server omits `scope` (RFC 6749 §5.1: then it equals the request). */
  requestedScope?: string;
}

export function tokenSetFromResponse(input: TokenSetInput): { tokens: TokenSet; rotated: boolean } {
  const { response, receivedAt, previous } = input;
  const skew = input.skewMs ?? 0;
  let expiresAt: number | null = null;
  if (
    typeof response.expires_in === "number" &&
    Number.isFinite(response.expires_in) &&
    response.expires_in >= 0
  ) {
    expiresAt = receivedAt + Math.floor(response.expires_in * 1000);
  } else {
    // No expires_in: if the access token is a JWT with `exp`, that is an absolute time on the
    // server's clock; convert it to ours. Otherwise expiry is unknown and we wait for a 401.
    const exp = peekJwtClaims(response.access_token)?.exp;
    if (exp !== undefined) expiresAt = exp * 1000 - skew;
  }

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
    refreshTokenExpiresAt = receivedAt + Math.floor(rtIn * 1000);
  } else if (refreshTokenExpiresAt == null && input.refreshTokenLifetimeMs !== undefined) {
    refreshTokenExpiresAt = (refreshTokenIssuedAt ?? receivedAt) + input.refreshTokenLifetimeMs;
  }

  const tokens: TokenSet = {
    accessToken: new Secret(response.access_token),
    tokenType: normalizeTokenType(response.token_type),
    expiresAt,
    obtainedAt: receivedAt,
  };
  if (refreshToken) tokens.refreshToken = refreshToken;
  const scope = response.scope ?? previous?.scope ?? input.requestedScope;
  if (scope !== undefined) tokens.scope = scope;
  if (refreshToken && refreshTokenIssuedAt !== undefined) tokens.refreshTokenIssuedAt = refreshTokenIssuedAt;
  if (refreshToken && refreshTokenExpiresAt !== undefined)
    tokens.refreshTokenExpiresAt = refreshTokenExpiresAt;
  return { tokens, rotated };
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
