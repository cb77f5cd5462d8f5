import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Secret } from "../../src/core/secret.js";
import {
  effectiveExpiry,
  estimateClockSkew,
  expiredOnArrival,
  tokenSetFromResponse,
} from "../../src/oauth/token-response.js";

const T0 = Date.UTC(2030, 0, 1);
const jwt = (claims: Record<string, unknown>) =>
  `eyJhbGciOiJub25lIn0.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

describe("token response → token set", () => {
  it("turns expires_in into an absolute expires_at at the instant of arrival", () => {
    const { tokens } = tokenSetFromResponse({
      response: { access_token: "a", token_type: "bearer", expires_in: 3600 },
      receivedAt: T0,
    });
    assert.equal(tokens.expiresAt, T0 + 3_600_000);
    assert.equal(tokens.obtainedAt, T0);
    assert.equal(tokens.tokenType, "Bearer");
  });

  it("records unknown expiry as null rather than inventing one", () => {
    const { tokens } = tokenSetFromResponse({
      response: { access_token: "opaque", token_type: "Bearer" },
      receivedAt: T0,
    });
    assert.equal(tokens.expiresAt, null);
  });

  it("without expires_in, uses a JWT's exp converted from the server's clock to ours", () => {
    const skewMs = 120_000; // server 2 minutes ahead
    const exp = (T0 + skewMs) / 1000 + 600;
    const { tokens } = tokenSetFromResponse({
      response: { access_token: jwt({ exp }), token_type: "Bearer" },
      receivedAt: T0,
      skewMs,
    });
    assert.equal(tokens.expiresAt, T0 + 600_000);
  });

  it("detects rotation and keeps a refresh token the server did not replace (RFC 6749 §6)", () => {
    const first = tokenSetFromResponse({
      response: { access_token: "a1", token_type: "Bearer", refresh_token: "r1", expires_in: 60 },
      receivedAt: T0,
    });
    assert.equal(first.rotated, false);
    const rotated = tokenSetFromResponse({
      response: { access_token: "a2", token_type: "Bearer", refresh_token: "r2", expires_in: 60 },
      receivedAt: T0 + 1,
      previous: first.tokens,
    });
    assert.equal(rotated.rotated, true);
    assert.equal(rotated.tokens.refreshTokenIssuedAt, T0 + 1);
    const kept = tokenSetFromResponse({
      response: { access_token: "a3", token_type: "Bearer", expires_in: 60 },
      receivedAt: T0 + 2,
      previous: rotated.tokens,
    });
    assert.equal(kept.rotated, false);
    assert.ok(kept.tokens.refreshToken?.equals(new Secret("r2")));
    assert.equal(kept.tokens.refreshTokenIssuedAt, T0 + 1);
  });

  it("keeps the grant's absolute refresh-token expiry across rotations", () => {
    const first = tokenSetFromResponse({
      response: {
        access_token: "a",
        token_type: "Bearer",
        refresh_token: "r1",
        refresh_token_expires_in: 86_400,
      },
      receivedAt: T0,
    });
    assert.equal(first.tokens.refreshTokenExpiresAt, T0 + 86_400_000);
    const next = tokenSetFromResponse({
      response: { access_token: "b", token_type: "Bearer", refresh_token: "r2" },
      receivedAt: T0 + 5_000,
      previous: first.tokens,
    });
    assert.equal(next.tokens.refreshTokenExpiresAt, T0 + 86_400_000);
    const configured = tokenSetFromResponse({
      response: { access_token: "a", token_type: "Bearer", refresh_token: "r1" },
      receivedAt: T0,
      refreshTokenLifetimeMs: 3_600_000,
    });
    assert.equal(configured.tokens.refreshTokenExpiresAt, T0 + 3_600_000);
  });

  it("uses the requested scope when the server omits scope", () => {
    const { tokens } = tokenSetFromResponse({
      response: { access_token: "a", token_type: "Bearer" },
      receivedAt: T0,
      requestedScope: "mcp:tools",
    });
    assert.equal(tokens.scope, "mcp:tools");
  });

  it("property: expires_at - obtained_at equals expires_in for any arrival time", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        // expires_in 0 is refused (an already-expired token), see test/hostile.
        fc.integer({ min: 1, max: 10_000_000 }),
        (at, expiresIn) => {
          const { tokens } = tokenSetFromResponse({
            response: { access_token: "a", token_type: "Bearer", expires_in: expiresIn },
            receivedAt: at,
          });
          assert.equal(tokens.expiresAt! - tokens.obtainedAt, expiresIn * 1000);
        },
      ),
    );
  });
});

describe("skew-corrected expiry: the earliest moment any resource server rejects the token", () => {
  const TTL_S = 120;
  const SKEW = 65_000;
  // The AS issued the token at our T0, i.e. at T0 + skew by its own clock.
  const exp = (skewMs: number) => Math.floor((T0 + skewMs) / 1000) + TTL_S;

  it("AS 65 s behind: a resource server on our clock rejects at the JWT's exp, 65 s before expires_in says", () => {
    const r = effectiveExpiry({ receivedAt: T0, expiresInS: TTL_S, jwtExpS: exp(-SKEW), skewMs: -SKEW });
    assert.equal(r.expiresAt, T0 + (TTL_S - 65) * 1000);
    assert.equal(r.grantedExpiresAt, T0 + TTL_S * 1000, "what the server stated, kept for display");
  });

  it("AS 65 s ahead: the JWT's exp is 65 s later on our clock; expires_in (the AS's own clock) is earlier", () => {
    const r = effectiveExpiry({ receivedAt: T0, expiresInS: TTL_S, jwtExpS: exp(SKEW), skewMs: SKEW });
    assert.equal(r.expiresAt, T0 + TTL_S * 1000);
    assert.equal(r.grantedExpiresAt, null, "nothing was taken off");
  });

  it("an opaque token from an AS behind us loses the skew too (a resource server on our clock reads its exp)", () => {
    const behind = effectiveExpiry({ receivedAt: T0, expiresInS: TTL_S, skewMs: -SKEW });
    assert.equal(behind.expiresAt, T0 + (TTL_S - 65) * 1000);
    const ahead = effectiveExpiry({ receivedAt: T0, expiresInS: TTL_S, skewMs: SKEW });
    assert.equal(ahead.expiresAt, T0 + TTL_S * 1000);
  });

  it("takes a JWT exp earlier than expires_in even with no skew, and knows nothing without either", () => {
    const r = effectiveExpiry({ receivedAt: T0, expiresInS: 3600, jwtExpS: T0 / 1000 + 600 });
    assert.equal(r.expiresAt, T0 + 600_000);
    assert.deepEqual(effectiveExpiry({ receivedAt: T0, skewMs: -SKEW }), {
      expiresAt: null,
      grantedExpiresAt: null,
    });
  });

  it("a lifetime shorter than the skew is dead on arrival", () => {
    const { tokens } = tokenSetFromResponse({
      response: { access_token: jwt({ exp: exp(-SKEW) - 60 }), token_type: "Bearer", expires_in: 60 },
      receivedAt: T0,
      skewMs: -SKEW,
    });
    assert.ok(expiredOnArrival(tokens));
    assert.equal(tokens.grantedExpiresAt, T0 + 60_000);
    const longer = tokenSetFromResponse({
      response: { access_token: "opaque", token_type: "Bearer", expires_in: 90 },
      receivedAt: T0,
      skewMs: -SKEW,
    });
    assert.ok(!expiredOnArrival(longer.tokens));
    assert.equal(longer.tokens.expiresAt, T0 + 25_000);
  });

  it("does not shave lifetime for a skew inside the measurement's resolution", () => {
    const r = effectiveExpiry({ receivedAt: T0, expiresInS: 900, skewMs: -600 });
    assert.equal(r.expiresAt, T0 + 900_000);
    const far = effectiveExpiry({ receivedAt: T0, expiresInS: 900, skewMs: -2_500 });
    assert.equal(far.expiresAt, T0 + 900_000 - 2_500);
  });

  it("property: never later than expires_in, nor than the JWT exp read by either clock", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: -600_000, max: 600_000 }),
        fc.integer({ min: -5, max: 5 }),
        (ttl, skewMs, expJitter) => {
          const jwtExpS = Math.floor((T0 + skewMs) / 1000) + ttl + expJitter;
          const r = effectiveExpiry({ receivedAt: T0, expiresInS: ttl, jwtExpS, skewMs });
          assert.ok(r.expiresAt! <= T0 + ttl * 1000);
          assert.ok(r.expiresAt! <= jwtExpS * 1000);
          // A skew under the measurement's 2 s resolution is not applied: the expiry margin covers it.
          const applied = Math.abs(skewMs) < 2_000 ? 0 : skewMs;
          assert.ok(r.expiresAt! <= jwtExpS * 1000 - applied);
          // The price of not knowing the resource server's clock is at most the skew (plus the
          // JWT's own disagreement with expires_in, and exp's one-second truncation).
          assert.ok(r.expiresAt! >= T0 + ttl * 1000 - Math.abs(skewMs) - 6_000);
        },
      ),
    );
  });
});

describe("clock skew estimation", () => {
  it("reads the Date header against the request's midpoint", () => {
    const serverNow = T0 + 45_000; // server 45 s ahead
    const skew = estimateClockSkew({
      sentAt: T0 - 100,
      receivedAt: T0 + 100,
      dateHeader: new Date(serverNow).toUTCString(),
    });
    assert.ok(skew !== undefined && Math.abs(skew - 45_000) <= 1_000, `skew ${skew}`);
  });
  it("falls back to a JWT iat, and returns undefined with nothing to go on", () => {
    const skew = estimateClockSkew({
      sentAt: T0,
      receivedAt: T0,
      accessToken: jwt({ iat: (T0 - 60_000) / 1000 }),
    });
    assert.ok(skew !== undefined && Math.abs(skew + 60_000) <= 1_000);
    assert.equal(estimateClockSkew({ sentAt: T0, receivedAt: T0, accessToken: "opaque" }), undefined);
  });
});
