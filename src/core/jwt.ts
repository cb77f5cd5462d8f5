/**
 * Reads claims from a JWT access token WITHOUT verifying it. The client is not the audience
 * and must not trust these claims for authorization; we only use `iat`/`exp` as a hint for
 * clock-skew estimation and when the server sent no `expires_in`.
 */
export interface PeekedClaims {
  iat?: number;
  exp?: number;
  aud?: string | string[];
  iss?: string;
}

export function peekJwtClaims(token: string): PeekedClaims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1] || parts[1].length > 16_384) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
    if (!payload || typeof payload !== "object") return undefined;
    const out: PeekedClaims = {};
    if (typeof payload.iat === "number" && Number.isFinite(payload.iat)) out.iat = payload.iat;
    if (typeof payload.exp === "number" && Number.isFinite(payload.exp)) out.exp = payload.exp;
    if (typeof payload.iss === "string") out.iss = payload.iss;
    if (typeof payload.aud === "string" || Array.isArray(payload.aud))
      out.aud = payload.aud as string | string[];
    return out;
  } catch {
    return undefined;
  }
}
