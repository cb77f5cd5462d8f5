/**
 * The verdict on a token set that was dead on arrival: its skew-corrected expiry (see
 * effectiveExpiry in oauth/token-response.ts) was not after the moment it arrived, so the server's
 * token lifetime is shorter than the clock difference. Asking again would only get another dead
 * token (and, with rotation, spend a refresh token per call), so the manager answers with this
 * error instead of refreshing, and looks again at most once per EXPIRED_ON_ARRIVAL_RECHECK_MS in
 * case a clock was fixed. Pure: time is a parameter.
 */
import { formatDuration } from "../core/duration.js";
import { ExpiredOnArrivalError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { expiredOnArrival } from "../oauth/token-response.js";

/** How long a dead-on-arrival token set stands before one new refresh may try again. */
export const EXPIRED_ON_ARRIVAL_RECHECK_MS = 60_000;

export function expiredOnArrivalError(
  record: ConnectorRecord,
  now: number,
): ExpiredOnArrivalError | undefined {
  const t = record.tokens;
  if (!t || !expiredOnArrival(t) || now - t.obtainedAt >= EXPIRED_ON_ARRIVAL_RECHECK_MS) return undefined;
  const granted = t.grantedExpiresAt ?? t.expiresAt;
  const grantedLifetimeMs = granted === null ? undefined : granted - t.obtainedAt;
  const skew = record.state.clockSkewMs;
  // Below a second the measurement cannot tell: then the token's own `exp` was already past.
  const clock =
    skew === undefined || Math.abs(skew) < 1_000
      ? `its \`exp\` had already passed by this machine's clock`
      : `the clock of ${record.server.issuer} is ${formatDuration(Math.abs(skew))} ${skew < 0 ? "behind" : "ahead of"} this machine's`;
  const action = `fix the clock of this machine or of ${record.server.issuer} (NTP), or have the server issue longer-lived tokens; Tokenkeeper tries again at most once per ${formatDuration(EXPIRED_ON_ARRIVAL_RECHECK_MS)}`;
  return new ExpiredOnArrivalError(
    {
      connector: record.name,
      ...(grantedLifetimeMs !== undefined ? { grantedLifetimeMs } : {}),
      ...(skew !== undefined ? { clockSkewMs: skew } : {}),
      action,
    },
    `the access token issued for "${record.name}" was already expired when it arrived: ${grantedLifetimeMs !== undefined ? `the server grants ${formatDuration(grantedLifetimeMs)} and ` : ""}${clock}, so a resource server on this machine's clock rejects it. ${action[0]!.toUpperCase()}${action.slice(1)}.`,
  );
}
