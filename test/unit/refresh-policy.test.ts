import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  achievableMinTtlMs,
  backoffDelayMs,
  classifyOAuthError,
  DEFAULT_RETRY,
  expiryMarginMs,
  freshness,
  refreshWindowMs,
} from "../../src/manager/refresh-policy.js";

const T0 = Date.UTC(2030, 0, 1);
const tokens = (lifetimeMs: number | null) => ({
  obtainedAt: T0,
  expiresAt: lifetimeMs === null ? null : T0 + lifetimeMs,
});

describe("refresh-ahead window", () => {
  it("is min(5 minutes, half the lifetime)", () => {
    assert.equal(refreshWindowMs(tokens(3_600_000)), 300_000);
    assert.equal(refreshWindowMs(tokens(10_000)), 5_000);
    assert.equal(refreshWindowMs(tokens(3_600_000), 60_000), 60_000);
    assert.equal(refreshWindowMs(tokens(null)), 0);
  });

  it("an hour-long token is fresh until 5 minutes (plus margin) before expiry, then usable, then stale", () => {
    const t = tokens(3_600_000);
    const margin = expiryMarginMs(t);
    assert.equal(margin, 5_000);
    assert.equal(freshness(t, T0 + 3_600_000 - 300_000 - margin, 0), "fresh");
    assert.equal(freshness(t, T0 + 3_600_000 - 300_000 - margin + 1, 0), "usable");
    assert.equal(freshness(t, T0 + 3_600_000 - margin - 1, 0), "usable");
    assert.equal(freshness(t, T0 + 3_600_000 - margin, 0), "stale");
    assert.equal(freshness(t, T0 + 3_600_001, 0), "stale");
  });

  it("a min-TTL longer than what is left makes the token stale", () => {
    const t = tokens(3_600_000);
    assert.equal(freshness(t, T0, 30 * 60_000), "fresh");
    assert.equal(freshness(t, T0 + 40 * 60_000, 30 * 60_000), "stale");
    assert.equal(freshness(t, T0 + 26 * 60_000, 30 * 60_000), "usable");
  });

  it("unknown expiry is fresh (we never invent a lifetime); no tokens is stale", () => {
    assert.equal(freshness(tokens(null), T0 + 10 * 365 * 86_400_000, 3_600_000), "fresh");
    assert.equal(freshness(null, T0, 0), "stale");
  });

  it("property: freshness never hands out a token that expires within minTtl", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1_000, max: 86_400_000 }),
        fc.integer({ min: 0, max: 90_000_000 }),
        fc.integer({ min: 0, max: 7_200_000 }),
        fc.integer({ min: 0, max: 900_000 }),
        (lifetime, elapsed, minTtl, ahead) => {
          const t = tokens(lifetime);
          const now = T0 + elapsed;
          const state = freshness(t, now, minTtl, ahead);
          if (state !== "stale")
            assert.ok(t.expiresAt! - now >= minTtl, `${state} token expires within minTtl`);
          if (state === "fresh") assert.ok(t.expiresAt! - now >= minTtl + refreshWindowMs(t, ahead));
        },
      ),
    );
  });
});

describe("backoff", () => {
  it("grows exponentially with jitter in [base/2, base] and is capped", () => {
    const policy = { ...DEFAULT_RETRY, initialDelayMs: 1000, maxDelayMs: 8000 };
    assert.equal(
      backoffDelayMs(0, policy, () => 0),
      500,
    );
    assert.equal(
      backoffDelayMs(0, policy, () => 1),
      1000,
    );
    assert.equal(
      backoffDelayMs(2, policy, () => 1),
      4000,
    );
    assert.equal(
      backoffDelayMs(10, policy, () => 1),
      8000,
    );
    assert.equal(
      backoffDelayMs(10, policy, () => 0),
      4000,
    );
  });

  it("never waits less than the server's Retry-After", () => {
    assert.equal(
      backoffDelayMs(0, DEFAULT_RETRY, () => 0.5, 7_000),
      7_000,
    );
    fc.assert(
      fc.property(
        fc.nat(30),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.nat(120_000),
        (attempt, r, retryAfter) => {
          const d = backoffDelayMs(attempt, DEFAULT_RETRY, () => r, retryAfter);
          assert.ok(d >= retryAfter && d <= Math.max(retryAfter, DEFAULT_RETRY.maxDelayMs));
        },
      ),
    );
  });
});

describe("OAuth error classification (RFC 6749 §5.2)", () => {
  it("treats revoked/expired/reused grants and dead clients as needing a human", () => {
    assert.deepEqual(classifyOAuthError("invalid_grant"), { kind: "permanent", reason: "invalid_grant" });
    assert.deepEqual(classifyOAuthError("invalid_client"), { kind: "permanent", reason: "invalid_client" });
    assert.deepEqual(classifyOAuthError("unauthorized_client"), {
      kind: "permanent",
      reason: "unauthorized_client",
    });
    assert.deepEqual(classifyOAuthError("invalid_scope"), { kind: "permanent", reason: "token_rejected" });
  });
  it("retries temporarily_unavailable and server_error", () => {
    assert.deepEqual(classifyOAuthError("temporarily_unavailable"), { kind: "transient" });
    assert.deepEqual(classifyOAuthError("server_error"), { kind: "transient" });
  });
});

describe("achievable min-TTL", () => {
  it("leaves a satisfiable request alone and lowers an impossible one to the refresh-ahead regime", () => {
    const hour = tokens(3_600_000);
    assert.equal(achievableMinTtlMs(hour, 30 * 60_000), 30 * 60_000);
    const tenSeconds = tokens(10_000); // margin 1 s, window 5 s: a fresh token lasts 4 s beyond the window
    assert.equal(achievableMinTtlMs(tenSeconds, 4_000), 4_000);
    assert.equal(achievableMinTtlMs(tenSeconds, 60_000), 2_000);
    assert.equal(achievableMinTtlMs(tokens(null), 60_000), 60_000);
  });
  it("property: a just-obtained token is always fresh for the achievable min-TTL", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_000, max: 86_400_000 }), fc.nat(10_000_000), (lifetime, minTtl) => {
        const t = tokens(lifetime);
        assert.equal(freshness(t, T0, achievableMinTtlMs(t, minTtl)), "fresh");
      }),
    );
  });
});
