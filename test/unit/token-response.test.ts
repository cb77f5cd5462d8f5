import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Secret } from "../../src/core/secret.js";
import { estimateClockSkew, tokenSetFromResponse } from "../../src/oauth/token-response.js";

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
        fc.integer({ min: 0, max: 10_000_000 }),
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
