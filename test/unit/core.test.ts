import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { ManualClock, timeoutSignal } from "../../src/core/clock.js";
import { formatDuration, parseDuration } from "../../src/core/duration.js";
import { EXIT, exitCodeFor, ReauthRequiredError, TransientError } from "../../src/core/errors.js";
import { redact, Secret, scrubText } from "../../src/core/secret.js";

describe("Secret", () => {
  const s = new Secret("super-secret-token-value");
  it("never prints its value: String, template, JSON, inspect, error messages", () => {
    for (const printed of [
      String(s),
      `${s}`,
      JSON.stringify({ s }),
      inspect(s),
      inspect({ nested: { s } }),
      new Error(`x ${s}`).message,
    ]) {
      assert.ok(!printed.includes("super-secret"), printed);
    }
    assert.equal(s.reveal(), "super-secret-token-value");
  });
  it("redact() strips secret-looking fields and Secrets from server objects", () => {
    const out = JSON.stringify(
      redact({ access_token: "abc", nested: { refresh_token: "def", ok: 1 }, list: [s] }),
    );
    assert.ok(!out.includes("abc") && !out.includes("def") && !out.includes("super-secret"));
    assert.ok(out.includes('"ok":1'));
  });
  it("scrubText() removes JWTs, bearer values and codes in URLs", () => {
    const text = scrubText(
      "Bearer abc.def got eyJhbGciOi.eyJzdWIi.sig at https://x/cb?code=SECRETCODE&state=s1",
    );
    assert.ok(!text.includes("abc.def") && !text.includes("eyJzdWIi") && !text.includes("SECRETCODE"), text);
  });
});

describe("durations", () => {
  it("parses the forms people type", () => {
    assert.equal(parseDuration("90s"), 90_000);
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("2d"), 172_800_000);
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("10"), 10_000);
    assert.throws(() => parseDuration("soon"), RangeError);
    assert.throws(() => parseDuration("5x"), RangeError);
    assert.equal(formatDuration(5_400_000), "1h30m");
    assert.equal(formatDuration(42), "42ms");
  });
});

describe("exit codes", () => {
  it("maps stable codes, not messages", () => {
    assert.equal(
      exitCodeFor(
        new ReauthRequiredError({ connector: "c", reason: "invalid_grant", since: 0, action: "login" }),
      ),
      EXIT.reauth,
    );
    assert.equal(exitCodeFor(new TransientError("x")), EXIT.transient);
    assert.equal(exitCodeFor(new Error("x")), EXIT.failure);
  });
});

describe("ManualClock", () => {
  it("wakes sleepers in deadline order and drives timeout signals", async () => {
    const clock = new ManualClock();
    const order: number[] = [];
    void clock.sleep(300).then(() => order.push(300));
    void clock.sleep(100).then(() => order.push(100));
    const { signal } = timeoutSignal(clock, 200);
    await clock.advance(150);
    assert.deepEqual(order, [100]);
    assert.equal(signal.aborted, false);
    await clock.advance(200);
    assert.deepEqual(order, [100, 300]);
    assert.equal(signal.aborted, true);
    assert.equal((signal.reason as Error).name, "TimeoutError");
  });
});

describe("CLI error output", () => {
  it("keeps the stable error code in --json output while redacting secret fields", async () => {
    const { reportError } = await import("../../src/cli/output.js");
    const { PassThrough } = await import("node:stream");
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const error = new TransientError("server down", { connector: "c", access_token: "leak-me" });
    const code = reportError(error, { stdout, stderr, stdin: new PassThrough() }, true);
    assert.equal(code, EXIT.transient);
    const printed = JSON.parse(String(stdout.read()));
    assert.equal(printed.error.code, "transient");
    assert.equal(printed.error.connector, "c");
    assert.ok(!JSON.stringify(printed).includes("leak-me"));
  });
});
