/**
 * Pure decisions of the token manager: is this token fresh, when to refresh, what a failure
 * means, how long to wait before the next try. No I/O, no clock reads: time is a parameter.
 */
import type { TokenSet } from "../core/record.js";
import { shellQuote } from "../core/shell-quote.js";

export const DEFAULT_REFRESH_AHEAD_MS = 5 * 60_000;

/**
 * How long before expiry we start refreshing: min(configured upper bound, half the lifetime).
 * Half the lifetime keeps short-lived tokens (seconds) from being refreshed continuously.
 */
export function refreshWindowMs(
  tokens: Pick<TokenSet, "expiresAt" | "obtainedAt">,
  refreshAheadMs = DEFAULT_REFRESH_AHEAD_MS,
): number {
  if (tokens.expiresAt === null) return 0;
  const lifetime = Math.max(0, tokens.expiresAt - tokens.obtainedAt);
  return Math.min(refreshAheadMs, Math.floor(lifetime / 2));
}

/**
 * A token within this margin of expiry is treated as expired: it must still be valid when the
 * request reaches the server. min(5 s, a tenth of the lifetime).
 */
export function expiryMarginMs(tokens: Pick<TokenSet, "expiresAt" | "obtainedAt">): number {
  if (tokens.expiresAt === null) return 0;
  return Math.min(5_000, Math.floor(Math.max(0, tokens.expiresAt - tokens.obtainedAt) / 10));
}

/**
 * - fresh: good for minTtl beyond the refresh-ahead window; nothing to do.
 * - usable: good for minTtl, but inside the window: hand it out and refresh in the background.
 * - stale: not good for minTtl: the caller must wait for a refresh.
 * Unknown expiry counts as fresh: we never invent a lifetime, a 401 tells us when it ends.
 */
export type Freshness = "fresh" | "usable" | "stale";

export function freshness(
  tokens: Pick<TokenSet, "expiresAt" | "obtainedAt"> | null | undefined,
  now: number,
  minTtlMs: number,
  refreshAheadMs = DEFAULT_REFRESH_AHEAD_MS,
): Freshness {
  if (!tokens) return "stale";
  if (tokens.expiresAt === null) return "fresh";
  const remaining = tokens.expiresAt - now - expiryMarginMs(tokens);
  if (remaining >= minTtlMs + refreshWindowMs(tokens, refreshAheadMs)) return "fresh";
  if (remaining >= minTtlMs && remaining > 0) return "usable";
  return "stale";
}

// Backoff is generic (the proxy's reconnects use it too): it lives in core.
export { backoffDelayMs, DEFAULT_RETRY, type RetryPolicy } from "../core/backoff.js";

export type PermanentReason = "invalid_grant" | "invalid_client" | "unauthorized_client" | "token_rejected";

/**
 * What an OAuth error from the token endpoint means for an unattended client (RFC 6749 §5.2).
 * invalid_grant: the refresh token is expired, revoked or reused — a human must log in again.
 * invalid_client / unauthorized_client: the client registration is gone or no longer allowed.
 * temporarily_unavailable / server_error (when sent with a 4xx): try again later.
 * Anything else (invalid_request, invalid_scope, unsupported_grant_type…) will not get better
 * by retrying the same request: also permanent.
 */
export function classifyOAuthError(
  error: string,
): { kind: "transient" } | { kind: "permanent"; reason: PermanentReason } {
  switch (error) {
    case "temporarily_unavailable":
    case "server_error":
    case "slow_down":
      return { kind: "transient" };
    case "invalid_grant":
    case "invalid_client":
    case "unauthorized_client":
      return { kind: "permanent", reason: error };
    default:
      return { kind: "permanent", reason: "token_rejected" };
  }
}

/**
 * The command a human runs to fix a connector that needs re-authorization. People paste it into
 * a shell, and the URL and scope may come from a server (a scope from a WWW-Authenticate
 * challenge can hold `$(…)`): every argument is single-quoted for POSIX shells.
 */
export function reauthAction(connector: string, mcpUrl: string, grant: string, scope?: string): string {
  const device = grant === "device_code" ? " --device" : "";
  const scoped = scope ? ` --scope ${shellQuote(scope)}` : "";
  return `run \`tokenkeeper login ${shellQuote(mcpUrl)} --name ${shellQuote(connector)}${device}${scoped}\``;
}

/**
 * A min-TTL the server can satisfy. Asking for more than a just-obtained token counts as fresh
 * for (lifetime minus the expiry margin and the refresh-ahead window) would refresh on every
 * call and still not get it; such a request is lowered to half that, the normal refresh-ahead
 * regime. Unknown lifetimes are not capped (nothing to compare with).
 */
export function achievableMinTtlMs(
  tokens: Pick<TokenSet, "expiresAt" | "obtainedAt"> | null | undefined,
  minTtlMs: number,
  refreshAheadMs = DEFAULT_REFRESH_AHEAD_MS,
): number {
  if (!tokens || tokens.expiresAt === null || minTtlMs <= 0) return Math.max(0, minTtlMs);
  const lifetime = tokens.expiresAt - tokens.obtainedAt;
  const best = lifetime - expiryMarginMs(tokens) - refreshWindowMs(tokens, refreshAheadMs);
  if (minTtlMs <= best) return minTtlMs;
  return Math.max(0, Math.floor(best / 2));
}
