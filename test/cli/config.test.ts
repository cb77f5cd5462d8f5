/**
 * `tokenkeeper config NAME [KEY VALUE | KEY --unset]`: a connector's own settings, validated
 * before anything is written, shown without the parts that may be secrets, and obeyed by the
 * commands that read them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TokenManager } from "../../src/manager/token-manager.js";
import { type Harness, startHarness } from "./unattended-harness.js";

describe("tokenkeeper config", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 30 });
    await h.connect("svc");
  });
  after(async () => {
    await h.close();
  });

  const settings = async () => (await h.store.get("svc"))!.record.settings;

  it("shows the defaults, as JSON in the one dialect", async () => {
    const r = await h.cli(["config", "svc", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      connector: "svc",
      settings: {
        refresh_ahead_ms: null,
        refresh_token_lifetime_ms: null,
        notify_command: null,
        notify_webhook: null,
        headers: [],
        proxy_token_wait_ms: null,
      },
    });
    const text = await h.cli(["config", "svc"]);
    assert.match(text.stdout, /refresh_ahead\s+\(default\)/);
  });

  it("sets durations, and the manager and status obey them", async () => {
    const r = await h.cli(["config", "svc", "refresh_ahead", "1s"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Set refresh_ahead of "svc"/);
    assert.equal((await settings()).refreshAheadMs, 1_000);
    // The manager's view: the refresh falls due 1 s (plus the expiry margin) before expiry,
    // instead of half the 30 s lifetime before it.
    const manager = new TokenManager({ store: h.store });
    const short = await manager.look("svc");
    assert.equal(short.refreshWindowMs, 1_000);
    assert.equal(short.refreshDueAt, short.expiresAt! - short.expiryMarginMs - 1_000);
    assert.equal((await h.cli(["config", "svc", "refresh_ahead", "--unset"])).code, 0);
    assert.equal((await settings()).refreshAheadMs, undefined);
    assert.ok((await manager.look("svc")).refreshWindowMs > 1_000);

    // A documented refresh-token lifetime shows up as its expiry in status.
    assert.equal((await h.cli(["config", "svc", "refresh_token_lifetime", "90d"])).code, 0);
    const tokens = (await h.store.get("svc"))!.record.tokens!;
    const status = await h.cli(["status", "svc", "--json"]);
    const shown = (JSON.parse(status.stdout).connectors as { refresh_token_expires_at: string }[])[0]!;
    assert.equal(
      shown.refresh_token_expires_at,
      new Date((tokens.refreshTokenIssuedAt ?? tokens.obtainedAt) + 90 * 24 * 3_600_000).toISOString(),
    );
    assert.equal((await h.cli(["config", "svc", "refresh_token_lifetime", "--unset"])).code, 0);
  });

  it("never shows a webhook's path or a header's value: either may be a secret", async () => {
    const hook = "https://hooks.example.com/services/T000/B000/s3cr3tPathPart";
    assert.equal((await h.cli(["config", "svc", "notify_webhook", hook])).code, 0);
    assert.equal((await h.cli(["config", "svc", "header.X-Api-Key", "key-value-s3cr3t"])).code, 0);
    const stored = await settings();
    assert.equal(stored.notifyWebhook, hook);
    assert.deepEqual(stored.headers, { "X-Api-Key": "key-value-s3cr3t" });
    for (const argv of [
      ["config", "svc"],
      ["config", "svc", "--json"],
    ]) {
      const r = await h.cli(argv);
      assert.equal(r.code, 0);
      assert.ok(!r.stdout.includes("s3cr3t"), r.stdout);
      assert.match(r.stdout, /https:\/\/hooks\.example\.com\/…/);
      assert.match(r.stdout, /X-Api-Key/);
    }
    assert.equal((await h.cli(["config", "svc", "header.x-api-key", "--unset"])).code, 0);
    assert.equal((await settings()).headers, undefined);
  });

  it("refuses bad keys and values with 78 and changes nothing", async () => {
    const snapshot = await settings();
    for (const argv of [
      ["config", "svc", "refresh_ahead", "soon"],
      ["config", "svc", "refresh_ahead", "400d"],
      ["config", "svc", "refresh_token_lifetime", "0s"],
      ["config", "svc", "notify_webhook", "http://hooks.example.com/x"],
      ["config", "svc", "notify_command", "  "],
      ["config", "svc", "header.Authorization", "Bearer x"],
      ["config", "svc", "header.Bad Name", "x"],
      ["config", "svc", "header.X-Injected", "a\r\nX-Other: b"],
      ["config", "svc", "no_such_setting", "1"],
    ]) {
      const r = await h.cli(argv);
      assert.equal(r.code, 78, `${argv.join(" ")}: ${r.stderr}`);
    }
    assert.deepEqual(await settings(), snapshot);
    assert.equal((await h.cli(["config", "nobody"])).code, 78);
    assert.equal((await h.cli(["config", "svc", "refresh_ahead"])).code, 64);
    assert.equal((await h.cli(["config", "svc", "refresh_ahead", "1m", "--unset"])).code, 64);
  });
});
