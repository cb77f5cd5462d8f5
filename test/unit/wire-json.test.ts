import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Secret } from "../../src/core/secret.js";
import { isInstantKey, snakeKey, toWire } from "../../src/core/wire-json.js";

describe("the wire JSON dialect", () => {
  it("snake_cases keys and turns instants into ISO-8601 UTC, durations stay numbers", () => {
    const at = Date.UTC(2026, 10, 25, 2, 0, 0);
    assert.deepEqual(
      toWire({
        type: "refreshed",
        connector: "c",
        at,
        expiresAt: at + 60_000,
        refreshTokenExpiresAt: null,
        durationMs: 12,
        refreshCount: 3,
        error: { code: "transient", retryAfterMs: 1000 },
        list: [{ since: at }],
        skipped: undefined,
      }),
      {
        type: "refreshed",
        connector: "c",
        at: "2026-11-25T02:00:00.000Z",
        expires_at: "2026-11-25T02:01:00.000Z",
        refresh_token_expires_at: null,
        duration_ms: 12,
        refresh_count: 3,
        error: { code: "transient", retry_after_ms: 1000 },
        list: [{ since: "2026-11-25T02:00:00.000Z" }],
      },
    );
  });

  it("leaves snake_case and strings alone, and keeps a Secret's own (redacted) form", () => {
    assert.equal(snakeKey("expires_at"), "expires_at");
    assert.ok(isInstantKey("expiresAt") && isInstantKey("at") && !isInstantKey("format"));
    const out = JSON.stringify(
      toWire({ token: new Secret("s3cr3t-value"), expires_at: "2026-01-01T00:00:00.000Z" }),
    );
    assert.ok(!out.includes("s3cr3t-value"));
    assert.match(out, /"expires_at":"2026-01-01T00:00:00.000Z"/);
  });
});
