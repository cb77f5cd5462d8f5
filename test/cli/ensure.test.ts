/**
 * `tokenkeeper ensure`: each exit code in its situation, against the real test bed, and the skip
 * records it prints validated against the published schema.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { skipRecordSchema } from "../../src/surfaces/skip-record.js";
import { type Harness, jsonLines, startHarness, startWebhook } from "./unattended-harness.js";

describe("tokenkeeper ensure", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 10 });
  });
  after(async () => {
    await h.close();
  });

  it("exits 0 with a ready record when tokens can be produced for the run (refreshing to prove the path)", async () => {
    await h.connect("ready1");
    const before = h.bed.as.counters.refreshGrantsSucceeded;
    const eventsFile = join(h.home, "ensure-events.jsonl");
    const r = await h.cli(["ensure", "ready1", "--min-ttl", "1h", "--json"], {
      env: { TOKENKEEPER_EVENTS: eventsFile },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, 1);
    const record = skipRecordSchema.parse(r.lines[0]);
    assert.equal(record.status, "ready");
    assert.equal(record.reason, "refreshed");
    assert.equal(record.exit_code, 0);
    assert.ok(record.expires_at && Date.parse(record.expires_at) > Date.now());
    // The refresh path was proven by a real refresh at the server.
    assert.equal(h.bed.as.counters.refreshGrantsSucceeded, before + 1);
    // TOKENKEEPER_EVENTS got the story: the refresh, the rotation, the record; never a token.
    const events = jsonLines(readFileSync(eventsFile, "utf8"));
    assert.deepEqual(
      events.map((e) => e.type),
      ["refreshed", "rotated", "skip_record"],
    );
    const tokens = (await h.store.get("ready1"))!.record.tokens!;
    const text = readFileSync(eventsFile, "utf8");
    assert.ok(!text.includes(tokens.accessToken.reveal()) && !text.includes(tokens.refreshToken!.reveal()));

    // A second preflight moments later (a parallel job) relies on that proof: no new refresh.
    const again = await h.cli(["ensure", "ready1", "--min-ttl", "1h", "--json"]);
    assert.equal(again.code, 0);
    assert.equal(skipRecordSchema.parse(again.lines[0]).reason, "fresh");
    assert.equal(h.bed.as.counters.refreshGrantsSucceeded, before + 1);
  });

  it("exits 75 when the token endpoint answers 503 and the access token is too short for --min-ttl", async () => {
    await h.connect("flaky");
    h.bed.as.failTokenEndpoint(1_000, "503");
    try {
      const started = Date.now();
      const r = await h.cli(["ensure", "flaky", "--min-ttl", "1m", "--timeout", "1s", "--json"]);
      assert.equal(r.code, 75, r.stderr);
      const record = skipRecordSchema.parse(r.lines[0]);
      assert.equal(record.status, "skipped");
      assert.equal(record.code, "transient");
      assert.equal(record.exit_code, 75);
      assert.ok(Date.now() - started < 5_000, "--timeout bounds the retries");
      assert.ok(h.bed.as.counters.injectedFailures >= 1);
    } finally {
      h.bed.as.clearTokenEndpointFailures();
    }
  });

  it("reports degraded (exit 0) when the refresh fails transiently but the current token covers the run", async () => {
    await h.connect("coasting");
    h.bed.as.failTokenEndpoint(1_000, "503");
    try {
      const r = await h.cli(["ensure", "coasting", "--min-ttl", "2s", "--timeout", "1s", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const record = skipRecordSchema.parse(r.lines[0]);
      assert.equal(record.status, "degraded");
      assert.equal(record.reason, "refresh_failing");
      assert.equal(record.code, "transient");
    } finally {
      h.bed.as.clearTokenEndpointFailures();
    }
  });

  it("exits 77 when the grant was revoked, notifies once, and later runs fail fast without the server", async () => {
    const hook = await startWebhook();
    try {
      await h.connect("revoked");
      await h.bed.as.revokeGrantOf((await h.store.get("revoked"))!.record.tokens!.refreshToken!.reveal());
      const r = await h.cli(["ensure", "revoked", "--json", "--notify-webhook", hook.url]);
      assert.equal(r.code, 77, r.stderr);
      const record = skipRecordSchema.parse(r.lines[0]);
      assert.equal(record.status, "skipped");
      assert.equal(record.reason, "invalid_grant");
      assert.equal(record.code, "reauth_required");
      assert.match(record.action ?? "", /tokenkeeper login .* --name 'revoked'/);
      assert.equal(hook.bodies.length, 1);
      assert.equal((hook.bodies[0] as { event: string }).event, "reauth_required");
      assert.equal((hook.bodies[0] as { connector: string }).connector, "revoked");

      // The next job: same verdict from the stored state, no token request, no second notification.
      const requests = h.bed.as.counters.tokenRequests;
      const again = await h.cli(["ensure", "revoked", "--json", "--notify-webhook", hook.url]);
      assert.equal(again.code, 77);
      assert.equal(h.bed.as.counters.tokenRequests, requests);
      assert.equal(hook.bodies.length, 1);
    } finally {
      await hook.close();
    }
  });

  it("three jobs finding the same dead grant at once, in three processes, send one notification", async () => {
    const hook = await startWebhook();
    try {
      await h.connect("shared-dead");
      await h.bed.as.revokeGrantOf((await h.store.get("shared-dead"))!.record.tokens!.refreshToken!.reveal());
      const jobs = [1, 2, 3].map(
        () => h.spawnCli(["ensure", "shared-dead", "--json", "--notify-webhook", hook.url]).done,
      );
      const results = await Promise.all(jobs);
      assert.deepEqual(
        results.map((r) => r.code),
        [77, 77, 77],
        results.map((r) => r.stderr).join("\n"),
      );
      assert.equal(hook.bodies.length, 1);
      assert.equal(h.bed.as.counters.refreshTokenReuse, 0);
    } finally {
      await hook.close();
    }
  });

  it("exits 77 when the refresh token's known absolute expiry falls inside the run", async () => {
    await h.connect("short-rt", { settings: { refreshTokenLifetimeMs: 60_000 } });
    const r = await h.cli(["ensure", "short-rt", "--min-ttl", "5m", "--json"]);
    assert.equal(r.code, 77);
    const record = skipRecordSchema.parse(r.lines[0]);
    assert.equal(record.reason, "refresh_token_expiring");
    assert.ok(record.refresh_token_expires_at);
    // Within the lifetime it is fine.
    assert.equal((await h.cli(["ensure", "short-rt", "--min-ttl", "10s"])).code, 0);
  });

  it("exits 78 for an unknown connector, bad flags, a bad duration, or nothing to check", async () => {
    const unknown = await h.cli(["ensure", "no-such-connector", "--json"]);
    assert.equal(unknown.code, 78);
    assert.equal(skipRecordSchema.parse(unknown.lines[0]).reason, "not_found");
    assert.equal((await h.cli(["ensure", "ready1", "--bogus"])).code, 78);
    assert.equal((await h.cli(["ensure", "ready1", "--min-ttl", "soon"])).code, 78);
    assert.equal((await h.cli(["ensure"])).code, 78);
    assert.equal((await h.cli(["ensure", "ready1", "--all"])).code, 78);
  });

  it("combines several connectors into the most serious exit code, one record each", async () => {
    const r = await h.cli(["ensure", "ready1", "revoked", "no-such-connector", "--json"]);
    assert.equal(r.code, 78);
    assert.deepEqual(
      r.lines.map((l) => [l.connector, l.status]),
      [
        ["ready1", "ready"],
        ["revoked", "skipped"],
        ["no-such-connector", "skipped"],
      ],
    );
    const two = await h.cli(["ensure", "ready1", "revoked"]);
    assert.equal(two.code, 77);
    assert.match(two.stdout, /revoked: skipped — invalid_grant/);
  });
});
