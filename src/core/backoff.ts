/**
 * Retry timing, pure: exponential backoff with jitter under a deadline. Used by the token
 * manager's refresh retries and the proxy's reconnects. No clock reads: time is a parameter.
 */

export interface RetryPolicy {
  /** First backoff delay (ms). */
  initialDelayMs: number;
  /** Largest backoff delay (ms). */
  maxDelayMs: number;
  /** How long one refresh keeps retrying transient failures before giving up (ms). */
  deadlineMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialDelayMs: 500, maxDelayMs: 30_000, deadlineMs: 60_000 };

/**
 * Exponential backoff with "equal jitter" (delay uniform in [base/2, base]; "full jitter" would
 * be [0, base]) so a fleet that failed together does not retry together, yet no retry comes
 * sooner than half the base. A server's Retry-After is a floor, never shortened.
 */
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number,
  retryAfterMs?: number,
): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, attempt));
  const jittered = Math.round(base / 2 + (random() * base) / 2);
  return Math.max(jittered, retryAfterMs ?? 0);
}
