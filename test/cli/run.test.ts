/**
 * `tokenkeeper run`: never starts a command that would fail for want of a token, returns the
 * command's exit code, forwards SIGTERM, keeps the command's tokens fresh across several token
 * lifetimes, and reports a grant revoked mid-run at once (skip record, one notification, no
 * retry storm at the authorization server).
 *
 * The command is test/cli/run-child.mjs: a real MCP client that fetches a token for every
 * request from the run (its endpoint, or `tokenkeeper token`) and calls the bed's `echo` tool.
 * Access tokens live 3 s here, so the runs below outlive several of them.
 *
 * @slow: the test runner starts it first so it overlaps the rest of the suite.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { achievableMinTtlMs, expiryMarginMs, refreshWindowMs } from "../../src/manager/refresh-policy.js";
import { skipRecordSchema } from "../../src/surfaces/skip-record.js";
import { type Harness, jsonLines, startHarness, startWebhook, waitFor } from "./unattended-harness.js";

const CHILD = fileURLToPath(new URL("./run-child.mjs", import.meta.url));

interface ChildSummary {
  calls: number;
  ok: number;
  failures: string[];
  firstFailureAt: number | null;
  lastOkAt: number | null;
  distinctTokens: number;
  viaCli: number;
}

function summaryOf(stdout: string): ChildSummary {
  const line = jsonLines(stdout).find((l) => "summary" in l);
  assert.ok(line, `no summary from the child in: ${stdout}`);
  return line.summary as ChildSummary;
}

describe("tokenkeeper run", () => {
  let h: Harness;
  let n = 0;
  const marker = () => join(h.home, `marker-${++n}`);
  before(async () => {
    h = await startHarness({ accessTokenTtl: 3 });
  });
  after(async () => {
    await h.close();
  });

  it("does not start the command when a connector is not ready: skip record on stdout and in --skip-file, exit 77", async () => {
    await h.connect("never");
    await h.bed.as.revokeGrantOf((await h.store.get("never"))!.record.tokens!.refreshToken!.reveal());
    const m = marker();
    const skipFile = join(h.home, "skip-never.jsonl");
    const r = await h.cli([
      "run",
      "--connector",
      "never",
      "--skip-file",
      skipFile,
      "--",
      process.execPath,
      CHILD,
      "--marker",
      m,
    ]);
    assert.equal(r.code, 77, r.stderr);
    assert.equal(existsSync(m), false, "the command was not started");
    const printed = skipRecordSchema.parse(r.lines[0]);
    assert.equal(printed.connector, "never");
    assert.equal(printed.status, "skipped");
    assert.equal(printed.exit_code, 77);
    const filed = jsonLines(readFileSync(skipFile, "utf8")).map((l) => skipRecordSchema.parse(l));
    assert.deepEqual(filed, [printed]);
    assert.match(r.stderr, /not starting/);
  });

  it("the command inherits the environment but not the store key, a client secret or a store password", async () => {
    await h.connect("envcheck");
    const out = join(h.home, "run-child-env.txt");
    const r = await h.cli(["run", "--connector", "envcheck", "--", "/bin/sh", "-c", `env > '${out}'`], {
      env: {
        KEEP_ME: "yes",
        // A file store never reads the key; a job must not see it either way.
        TOKENKEEPER_KEY: "key-material-not-for-children",
        TOKENKEEPER_CLIENT_SECRET: "client-secret-not-for-children",
        TOKENKEEPER_NOTIFY_WEBHOOK: "https://hooks.example/T000/secret-path",
      },
    });
    assert.equal(r.code, 0, r.stderr);
    const seen = readFileSync(out, "utf8");
    assert.match(seen, /^KEEP_ME=yes$/m);
    assert.match(seen, /^TOKENKEEPER_RUN_URL=/m, "the run endpoint is there");
    assert.match(seen, /^TOKENKEEPER_RUN_SECRET=/m, "with its secret");
    assert.match(seen, /^TOKENKEEPER_STORE=/m, "a store URL without a password is configuration");
    assert.doesNotMatch(seen, /^TOKENKEEPER_KEY=/m);
    assert.doesNotMatch(seen, /^TOKENKEEPER_CLIENT_SECRET=/m);
    assert.doesNotMatch(seen, /^TOKENKEEPER_NOTIFY_WEBHOOK=/m);
    assert.doesNotMatch(seen, /key-material-not-for-children|client-secret-not-for-children|secret-path/);
  });

  it("exits 78 without starting anything for an unknown connector or a missing command", async () => {
    const m = marker();
    assert.equal(
      (await h.cli(["run", "--connector", "nobody", "--", process.execPath, CHILD, "--marker", m])).code,
      78,
    );
    assert.equal((await h.cli(["run", "--connector", "nobody"])).code, 78);
    assert.equal(existsSync(m), false);
  });

  it("returns the command's exit code (127 when it cannot be started)", async () => {
    await h.connect("ok");
    const r = await h.cli(["run", "--connector", "ok", "--", process.execPath, CHILD, "--exit", "7"]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal((await h.cli(["run", "--connector", "ok", "--", "/nonexistent/command"])).code, 127);
  });

  it("forwards SIGTERM to the command and returns its exit code", async () => {
    const m = marker();
    const { child, done } = h.spawnCli([
      "run",
      "--connector",
      "ok",
      "--",
      process.execPath,
      CHILD,
      "--sigterm-exit",
      "42",
      "--marker",
      m,
    ]);
    await waitFor(
      () => existsSync(m) && readFileSync(m, "utf8").includes("finished"),
      20_000,
      "the command to start",
    );
    child.kill("SIGTERM");
    const r = await done;
    assert.equal(r.code, 42, r.stderr);
    assert.match(readFileSync(m, "utf8"), /SIGTERM/);
  });

  it("keeps the command's tokens fresh for a run of several token lifetimes (endpoint and `tokenkeeper token`)", async () => {
    await h.connect("long");
    const refreshes = h.bed.as.counters.refreshGrantsSucceeded;
    const startedAt = Date.now();
    const r = await h.cli([
      "run",
      "--connector",
      "long",
      "--min-ttl",
      "30s",
      "--",
      process.execPath,
      CHILD,
      "--connector",
      "long",
      "--mcp",
      h.bed.mcpUrl,
      "--seconds",
      "9",
      "--interval",
      "250",
      "--via",
      "both",
    ]);
    const elapsedMs = Date.now() - startedAt;
    assert.equal(r.code, 0, r.stderr);
    const s = summaryOf(r.stdout);
    assert.deepEqual(s.failures, []);
    // Each `tokenkeeper token` call starts a process (slow under load): count, do not time.
    assert.ok(s.ok >= 4, `only ${s.ok} calls`);
    assert.ok(s.viaCli >= 2, "some tokens came through `tokenkeeper token` inside the run");
    // 9 s of 3 s tokens: at least three distinct tokens were used, all of them accepted.
    assert.ok(s.distinctTokens >= 3, `${s.distinctTokens} tokens`);
    const made = h.bed.as.counters.refreshGrantsSucceeded - refreshes;
    // At least one refresh per 3 s lifetime of the command's 9 s, and no refresh storm: at most
    // one per the shortest spacing the policy allows, over the whole run (measured, since a
    // loaded machine stretches it), plus the first and last. That spacing is the age at which a
    // caller needing the run's --min-ttl (capped to what the token can give) gets a refresh, for
    // the shortest token the manager can see: a 3 s JWT whose `exp` (whole seconds, and the
    // expiry every decision uses) leaves 2 s after it arrives.
    const shortest = { obtainedAt: 0, expiresAt: 2_000 };
    const spacing =
      shortest.expiresAt -
      expiryMarginMs(shortest) -
      refreshWindowMs(shortest) -
      achievableMinTtlMs(shortest, 30_000);
    const most = Math.ceil(elapsedMs / spacing) + 2;
    assert.ok(
      made >= 3 && made <= most,
      `${made} refreshes in ${elapsedMs} ms of 3 s tokens (at most ${most})`,
    );
    assert.equal(h.bed.as.counters.refreshTokenReuse, 0);
  });

  it("reports a token endpoint outage mid-run once, and the recovery, without stopping the command", async () => {
    await h.connect("outage");
    const skipFile = join(h.home, "skip-outage.jsonl");
    const running = h.cli([
      "run",
      "--connector",
      "outage",
      "--skip-file",
      skipFile,
      "--timeout",
      "1s",
      "--",
      process.execPath,
      CHILD,
      "--connector",
      "outage",
      "--mcp",
      h.bed.mcpUrl,
      "--seconds",
      "8",
      "--interval",
      "200",
    ]);
    // A 2 s outage of the token endpoint, by time and not by a count of failures: how many
    // requests the retries and probes spend inside it depends on their jitter, and a count
    // could outlast the command. 2 s outlasts a refresh's 1 s bound (the outage is reported);
    // a probe every 1–2 s after it finds the endpoint back well before the 8 s command ends.
    await new Promise((r) => setTimeout(r, 1_000));
    h.bed.as.failTokenEndpoint(1_000, "503");
    await new Promise((r) => setTimeout(r, 2_000));
    h.bed.as.clearTokenEndpointFailures();
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    const records = jsonLines(readFileSync(skipFile, "utf8")).map((l) => skipRecordSchema.parse(l));
    const statuses = records.map((x) => `${x.status}:${x.reason}`);
    assert.ok(records.length >= 2 && records.length <= 3, statuses.join(", "));
    assert.ok(records[0]!.code === "transient" && records[0]!.exit_code !== 77, statuses.join(", "));
    assert.equal(statuses.at(-1), "ready:recovered");
    assert.equal(h.bed.as.counters.refreshTokenReuse, 0);
    assert.ok(summaryOf(r.stdout).ok > 0);
  });

  it("reports a grant revoked mid-run at its next refresh: skip record, one notification, one refused refresh", async () => {
    await h.connect("revoked-mid");
    const hook = await startWebhook();
    const skipFile = join(h.home, "skip-mid.jsonl");
    const eventsFile = join(h.home, "events-mid.jsonl");
    const marker = join(h.home, "marker-mid");
    try {
      const running = h.cli([
        "run",
        "--connector",
        "revoked-mid",
        "--skip-file",
        skipFile,
        "--notify-webhook",
        hook.url,
        "--events",
        eventsFile,
        "--",
        process.execPath,
        CHILD,
        "--connector",
        "revoked-mid",
        "--mcp",
        h.bed.mcpUrl,
        "--seconds",
        "8",
        "--interval",
        "100",
        "--marker",
        marker,
      ]);
      // Revoke only once the command is connected and working: on a loaded machine it may take
      // longer than any fixed pause to start.
      await waitFor(
        () => existsSync(marker) && readFileSync(marker, "utf8").includes("first call ok"),
        30_000,
        "the command's first call",
      );
      const counters = {
        requests: h.bed.as.counters.tokenRequests,
        rejected: h.bed.as.counters.rejectedRefreshTokens,
      };
      const revokedAt = Date.now();
      assert.equal((await h.bed.as.revokeAllGrants()) >= 1, true);
      // The run learns of the revocation at its next refresh, at most a token lifetime (3 s)
      // away; the bound leaves a loaded machine room. The latency is printed below.
      await waitFor(() => existsSync(skipFile), 10_000, "the skip record");
      const reportedAfter = Date.now() - revokedAt;

      const r = await running;
      assert.equal(r.code, 0, "the command's own exit code");
      const records = jsonLines(readFileSync(skipFile, "utf8")).map((l) => skipRecordSchema.parse(l));
      assert.equal(records.length, 1);
      assert.equal(records[0]!.status, "skipped");
      assert.equal(records[0]!.code, "reauth_required");
      assert.equal(records[0]!.exit_code, 77);
      assert.match(r.stderr, /revoked-mid: skipped — invalid_grant/);

      // The command saw ReauthRequired (77 from the endpoint) at its next call, and nothing else.
      const s = summaryOf(r.stdout);
      assert.ok(s.firstFailureAt !== null, "the command noticed");
      assert.ok(s.firstFailureAt - revokedAt < 10_000, `${s.firstFailureAt - revokedAt} ms`);
      assert.ok(
        s.failures.every((f) => f.includes("reauth_required")),
        s.failures.join("\n"),
      );

      // One notification; one refresh attempt refused; then no more token requests (no storm).
      assert.equal(hook.bodies.length, 1);
      assert.equal((hook.bodies[0] as { event: string }).event, "reauth_required");
      assert.equal(h.bed.as.counters.rejectedRefreshTokens - counters.rejected, 1);
      assert.equal(h.bed.as.counters.tokenRequests - counters.requests, 1);
      // The events log tells the story without a secret.
      const events = readFileSync(eventsFile, "utf8");
      assert.match(events, /"type":"reauth_required"/);
      assert.match(events, /"type":"notification_sent"/);
      const rt = (await h.store.get("revoked-mid"))!.record.tokens!;
      assert.ok(!events.includes(rt.accessToken.reveal()) && !events.includes(rt.refreshToken!.reveal()));
      console.log(
        `revocation reported ${reportedAfter} ms after it happened; the command failed ${s.firstFailureAt - revokedAt} ms after`,
      );
    } finally {
      await hook.close();
    }
  });
});
