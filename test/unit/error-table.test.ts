/**
 * One table maps each error code to its exit code and retryability; the CLI's JSON errors, skip
 * records and the proxy's JSON-RPC codes read it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ConfigError,
  ERROR_KINDS,
  EXIT,
  errorJson,
  exitCodeFor,
  isRetryable,
  LockTimeoutError,
  ReauthRequiredError,
  TokenkeeperError,
  TransientError,
} from "../../src/core/errors.js";
import { PROXY_ERROR, rpcCodeFor } from "../../src/surfaces/proxy/errors.js";
import { skippedRecord } from "../../src/surfaces/skip-record.js";

describe("the error table", () => {
  it("gives every code an exit code, and only the transient exit (75) is retryable", () => {
    for (const [code, kind] of Object.entries(ERROR_KINDS)) {
      assert.ok((Object.values(EXIT) as number[]).includes(kind.exit), code);
      assert.equal(kind.retryable, kind.exit === EXIT.transient, code);
    }
    assert.equal(exitCodeFor(new TransientError("x")), 75);
    assert.equal(exitCodeFor(new Error("bug")), 1);
    assert.equal(isRetryable(new LockTimeoutError("c", 10)), true);
    assert.equal(isRetryable(new ConfigError("x")), false);
    assert.equal(isRetryable(new Error("bug")), false);
  });

  it("one JSON shape: stable code, retryability, redacted fields, scrubbed message", () => {
    const json = errorJson(
      new TransientError("token endpoint said Bearer abc.def", { status: 503, token: "t0ps3cret" }),
    );
    assert.equal(json.code, "transient");
    assert.equal(json.retryable, true);
    assert.equal(json.status, 503);
    assert.equal(json.token, "[redacted]");
    assert.ok(!JSON.stringify(json).includes("abc.def"));
    // A field named `code` cannot overwrite the stable error code.
    assert.equal(
      errorJson(new TokenkeeperError("login_failed", "x", { code: "oauth-code" })).code,
      "login_failed",
    );
    assert.deepEqual(errorJson(new Error("boom")), { code: "internal", message: "boom", retryable: false });
  });

  it("skip records and JSON-RPC codes follow the table", () => {
    const reauth = new ReauthRequiredError({
      connector: "c",
      reason: "invalid_grant",
      since: 0,
      action: "tokenkeeper login --name c",
    });
    const times = { now: 0, expiresAt: null, refreshTokenExpiresAt: null };
    for (const [error, rpc] of [
      [reauth, PROXY_ERROR.reauthRequired],
      [new TransientError("x"), PROXY_ERROR.unavailable],
      [new LockTimeoutError("c", 5), PROXY_ERROR.unavailable],
      [new ConfigError("x"), PROXY_ERROR.config],
      [new TokenkeeperError("cancelled", "x"), PROXY_ERROR.refused],
      [new TokenkeeperError("protocol_error", "x"), PROXY_ERROR.badResponse],
    ] as const) {
      assert.equal(rpcCodeFor(error), rpc, error.code);
      const record = skippedRecord("c", error, times);
      assert.equal(record.exit_code, ERROR_KINDS[error.code].exit, error.code);
      if (isRetryable(error)) assert.match(record.action ?? "", /next scheduled run retries/);
    }
  });
});
