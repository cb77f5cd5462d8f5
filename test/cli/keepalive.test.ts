/**
 * `tokenkeeper keepalive`: refreshes idle connectors (the AS's counters say so), warns once ahead
 * of a short absolute refresh-token lifetime, re-sends a notification that never got out, and as
 * a service stops cleanly on SIGTERM.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ManualClock } from "../../src/core/clock.js";
import { skipRecordSchema } from "../../src/surfaces/skip-record.js";
import { type Harness, startHarness, startWebhook, waitFor } from "./unattended-harness.js";

describe("tokenkeeper keepalive", () => {
  let h: Harness;
  let hook: Awaited<ReturnType<typeof startWebhook>>;
  before(async () => {
    // The bed's refresh tokens die 10 minutes after first issue, whatever rotation does.
    h = await startHarness({ accessTokenTtl: 30, refreshTokenTtl: 600 });
    hook = await startWebhook();
  });
  after(async () => {
    await hook.close();
    await h.close();
  });

  it("--once refreshes a connector left idle, and leaves a recently used one alone", async () => {
    await h.connect("idle");
    await sleep(1_100);
    await h.connect("busy");
    const refreshes = h.bed.as.counters.refreshGrantsSucceeded;
    // The pass runs at a fixed moment just after "busy" was used: a loaded machine may take
    // seconds to start it, which must not turn "busy" idle.
    const clock = new ManualClock(Date.now());
    const r = await h.cli(["keepalive", "--once", "--idle", "1s", "--json", "idle", "busy"], { clock });
    assert.equal(r.code, 0, r.stderr);
    const [idle, busy] = r.lines.map((l) => skipRecordSchema.parse(l));
    assert.equal(idle!.reason, "refreshed");
    assert.equal(busy!.reason, "idle_ok");
    assert.equal(
      h.bed.as.counters.refreshGrantsSucceeded,
      refreshes + 1,
      "one refresh, for the idle connector",
    );
    const stored = (await h.store.get("idle"))!.record;
    assert.equal(stored.state.refreshCount, 1);
    assert.equal(stored.state.rotationCount, 1);
  });

  it("warns once, ahead of a known absolute refresh-token expiry, through the notification channel", async () => {
    // The provider documents a 10-minute absolute lifetime; warn 15 minutes ahead.
    await h.connect("short", { settings: { refreshTokenLifetimeMs: 600_000 } });
    hook.bodies.length = 0;
    const args = [
      "keepalive",
      "--once",
      "--warn-before",
      "15m",
      "--notify-webhook",
      hook.url,
      "--json",
      "short",
    ];
    const r = await h.cli(args);
    assert.equal(r.code, 0, r.stderr);
    const record = skipRecordSchema.parse(r.lines[0]);
    assert.equal(record.status, "degraded");
    assert.equal(record.reason, "refresh_token_expiring");
    assert.match(record.action ?? "", /tokenkeeper login .* --name 'short'/);
    assert.ok(record.refresh_token_expires_at);
    assert.equal(hook.bodies.length, 1);
    assert.equal((hook.bodies[0] as { event: string }).event, "refresh_token_expiring");
    assert.ok((await h.store.get("short"))!.record.state.expiryWarnedAt);

    // The next pass (cron, an hour later) does not warn again for the same expiry.
    const again = await h.cli(args);
    assert.equal(again.code, 0);
    assert.equal(hook.bodies.length, 1);
    // With a shorter warning period, nothing is due yet.
    const quiet = await h.cli(["keepalive", "--once", "--warn-before", "1m", "--json", "short"]);
    assert.equal(skipRecordSchema.parse(quiet.lines[0]).status, "ready");
  });

  it("sends a re-authorization notification that could not be sent when the grant died", async () => {
    await h.connect("dead");
    await h.bed.as.revokeGrantOf((await h.store.get("dead"))!.record.tokens!.refreshToken!.reveal());
    // Found dead by a job that had no notification target configured.
    assert.equal((await h.cli(["ensure", "dead"])).code, 77);
    hook.bodies.length = 0;
    // The global channel from the environment this time (TOKENKEEPER_NOTIFY_WEBHOOK).
    const r = await h.cli(["keepalive", "--once", "--json", "dead"], {
      env: { TOKENKEEPER_NOTIFY_WEBHOOK: hook.url },
    });
    assert.equal(r.code, 77);
    assert.equal(skipRecordSchema.parse(r.lines[0]).reason, "invalid_grant");
    assert.equal(hook.bodies.length, 1);
    assert.equal((hook.bodies[0] as { event: string }).event, "reauth_required");
    // Once per transition.
    await h.cli(["keepalive", "--once", "--notify-webhook", hook.url, "dead"]);
    assert.equal(hook.bodies.length, 1);
  });

  it("as a service, makes a pass every --interval and stops promptly when aborted", async () => {
    await h.connect("svc-idle");
    const controller = new AbortController();
    const refreshes = h.bed.as.counters.refreshGrantsSucceeded;
    const running = h.cli(["keepalive", "--interval", "1s", "--idle", "500ms", "--json", "svc-idle"], {
      signal: controller.signal,
    });
    await waitFor(
      () => h.bed.as.counters.refreshGrantsSucceeded >= refreshes + 2,
      5_000,
      "two keepalive passes",
    );
    const stoppedAt = Date.now();
    controller.abort(new Error("received SIGTERM"));
    const r = await running;
    assert.equal(r.code, 0);
    assert.ok(Date.now() - stoppedAt < 1_000, "stopped without waiting for the next pass");
    assert.ok(r.lines.length >= 2);
  });

  it("as a separate process, exits 0 on SIGTERM", async () => {
    const { child, done } = h.spawnCli(["keepalive", "--interval", "1h", "--json", "busy"]);
    let out = "";
    child.stdout!.on("data", (c) => {
      out += c;
    });
    await waitFor(() => out.includes('"connector":"busy"'), 15_000, "the first pass");
    child.kill("SIGTERM");
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
  });
});
