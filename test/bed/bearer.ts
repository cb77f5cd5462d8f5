// Bearer-token checking for the bed's MCP server: JWT access tokens (RFC 9068) verified against
// the authorization server's JWKS, and the 401/403 challenges of RFC 6750 §3 with the
// resource_metadata parameter of RFC 9728 §5.1 that MCP clients use to discover the AS.
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from "jose";

export interface BearerVerifierOptions {
  issuer: string;
  jwksUri: string;
  /** The resource this server is: tokens must carry it as `aud` (RFC 8707 §2, RFC 9068 §4). */
  audience: string;
  /** Seconds of leeway on exp/nbf (default 0: an expired token is expired). */
  clockToleranceSeconds: number;
  /**
   * This server's clock (epoch ms), against which exp/nbf are judged. Default: the real clock.
   * Tests move it to put the resource server on the client's clock or on the AS's.
   */
  now?: () => number;
}

export type BearerResult =
  | { ok: true; auth: AuthInfo }
  /** No credentials at all: challenge without an error code (RFC 6750 §3.1). */
  | { ok: false; kind: "missing" }
  /** Malformed Authorization header: 400 invalid_request (RFC 6750 §3.1). */
  | { ok: false; kind: "malformed"; description: string }
  | { ok: false; kind: "invalid"; description: string };

export function createBearerVerifier(opts: BearerVerifierOptions) {
  // jose caches the key set and refetches on an unknown kid, so AS key rotation just works.
  const jwks = createRemoteJWKSet(new URL(opts.jwksUri), { cooldownDuration: 0 });

  return async function verifyBearer(authorization: string | undefined): Promise<BearerResult> {
    if (!authorization) return { ok: false, kind: "missing" };
    const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
    if (!match) {
      // Another scheme (e.g. Basic) is "no bearer credentials", not a malformed bearer header.
      if (!/^Bearer\b/i.test(authorization)) return { ok: false, kind: "missing" };
      return { ok: false, kind: "malformed", description: "malformed Bearer authorization header" };
    }
    const token = match[1] as string;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: opts.issuer,
        audience: opts.audience,
        clockTolerance: opts.clockToleranceSeconds,
        ...(opts.now ? { currentDate: new Date(opts.now()) } : {}),
        algorithms: ["RS256"],
        typ: "at+jwt",
        requiredClaims: ["exp", "sub", "client_id"],
      });
      return {
        ok: true,
        auth: {
          token,
          clientId: String(payload.client_id),
          scopes: typeof payload.scope === "string" ? payload.scope.split(" ").filter(Boolean) : [],
          expiresAt: payload.exp,
          resource: new URL(opts.audience),
          extra: { sub: payload.sub, jti: payload.jti, iat: payload.iat },
        },
      };
    } catch (err) {
      return { ok: false, kind: "invalid", description: describe(err) };
    }
  };
}

function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "The access token expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `The access token is invalid (${err.claim})`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed)
    return "The access token signature is invalid";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "The access token was signed by an unknown key";
  return "The access token is invalid";
}

/** Quotes a value for an auth-param (RFC 9110 §11.2 quoted-string). */
function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** Builds a `WWW-Authenticate: Bearer ...` value from params, skipping undefined/empty ones. */
export function bearerChallenge(params: Record<string, string | undefined>): string {
  const parts = Object.entries(params)
    .filter((e): e is [string, string] => typeof e[1] === "string" && e[1] !== "")
    .map(([k, v]) => `${k}=${quote(v)}`);
  return parts.length ? `Bearer ${parts.join(", ")}` : "Bearer";
}
