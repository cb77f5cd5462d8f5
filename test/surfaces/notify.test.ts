/**
 * Notifications: once per transition across processes (the compare-and-set claim), both channels,
 * bounded (timeouts, retries), released for a retry when every channel failed, no secrets.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { ConfigError } from "../../src/core/errors.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { updateRecord } from "../../src/store/update.js";
import { Notifier } from "../../src/surfaces/notify.js";
import { skipRecordSchema } from "../../src/surfaces/skip-record.js";
import { startWebhook } from "../cli/unattended-harness.js";
import { makeRecord } from "../support/fixtures.js";

const NOW = Date.now();

function deadRecord(name: string, since = NOW, settings: ConnectorRecord["settings"] = {}): ConnectorRecord {
  const r = makeRecord(name, { settings }, NOW);
  return {
    ...r,
    state: {
      ...r.state,
      health: "reauth_required",
      reauth: {
        reason: "invalid_grant",
        since,
        action: `run \`tokenkeeper login ${r.server.mcpUrl} --name ${name}\``,
        serverError: "invalid_grant",
      },
    },
  };
}

describe("Notifier", () => {
  let dir: string;
  let hook: Awaited<ReturnType<typeof startWebhook>>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tk-notify-"));
    hook = await startWebhook();
  });
  after(async () => {
    await hook.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("notifies once per transition, however many processes notice it at once", async () => {
    hook.bodies.length = 0;
    const store = new MemoryStore();
    await store.put("c1", deadRecord("c1"), null);
    // Five "processes": separate notifiers on one store.
    const notifiers = Array.from(
      { length: 5 },
      () => new Notifier({ clock: systemClock, global: { webhook: hook.url } }),
    );
    const outcomes = await Promise.all(notifiers.map((n) => n.notifyReauth(store, "c1")));
    assert.deepEqual(outcomes.filter((o) => o === "sent").length, 1, outcomes.join(","));
    assert.equal(outcomes.filter((o) => o === "already_notified").length, 4);
    assert.equal(hook.bodies.length, 1);
    const body = hook.bodies[0] as Record<string, unknown>;
    assert.equal(body.event, "reauth_required");
    const { event: _event, ...record } = body;
    const parsed = skipRecordSchema.parse(record);
    assert.equal(parsed.status, "skipped");
    assert.equal(parsed.reason, "invalid_grant");
    assert.equal(parsed.exit_code, 77);
    // Never a secret in the payload.
    const text = JSON.stringify(body);
    assert.ok(!text.includes("access-token-value-0001") && !text.includes("refresh-token-value-0001"));

    // Later runs: still the same transition, no new notification.
    assert.equal(await notifiers[0]!.notifyReauth(store, "c1"), "already_notified");
    // A new transition (a later login failed again) is announced again.
    await updateRecord(store, "c1", (r) => ({
      ...r,
      state: { ...r.state, reauth: { ...r.state.reauth!, since: Date.now() + 1 } },
    }));
    assert.equal(await notifiers[1]!.notifyReauth(store, "c1"), "sent");
    assert.equal(hook.bodies.length, 2);
  });

  it("marks through the token manager: once per transition across managers on one store", async () => {
    hook.bodies.length = 0;
    const store = new MemoryStore();
    await store.put("c1m", deadRecord("c1m"), null);
    const managers = Array.from({ length: 3 }, () => new TokenManager({ store, clock: systemClock }));
    const notifier = new Notifier({ clock: systemClock, global: { webhook: hook.url } });
    const outcomes = await Promise.all(managers.map((m) => notifier.notifyReauth(m, "c1m")));
    assert.equal(outcomes.filter((o) => o === "sent").length, 1, outcomes.join(","));
    assert.equal(outcomes.filter((o) => o === "already_notified").length, 2);
    assert.equal(hook.bodies.length, 1);
    assert.ok((await store.get("c1m"))?.record.state.notifiedAt !== undefined);
    // A bare store and a manager over it see the same mark.
    assert.equal(await notifier.notifyReauth(store, "c1m"), "already_notified");
    await Promise.all(managers.map((m) => m.close()));
  });

  it("runs a command with the record on stdin; a connector's own setting wins over the global one", async () => {
    const out = join(dir, "cmd.json");
    const store = new MemoryStore();
    await store.put(
      "c2",
      deadRecord("c2", NOW, {
        notifyCommand: `cat > '${out}'; echo "$TOKENKEEPER_EVENT $TOKENKEEPER_CONNECTOR" >> '${out}.env'`,
      }),
      null,
    );
    hook.bodies.length = 0;
    const notifier = new Notifier({ clock: systemClock, global: { command: "exit 3", webhook: hook.url } });
    assert.equal(await notifier.notifyReauth(store, "c2"), "sent");
    const record = JSON.parse(await readFile(out, "utf8"));
    assert.equal(record.connector, "c2");
    assert.equal(record.event, "reauth_required");
    assert.equal((await readFile(`${out}.env`, "utf8")).trim(), "reauth_required c2");
    // The global webhook still applies (the connector set only a command).
    assert.equal(hook.bodies.length, 1);
  });

  it("does not hand a notification command the store key, a client secret or our other secrets", async () => {
    const out = join(dir, "child-env.txt");
    const store = new MemoryStore();
    await store.put("c-env", deadRecord("c-env"), null);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      KEEP_ME: "yes",
      TOKENKEEPER_KEY: "key-material-not-for-children",
      TOKENKEEPER_KEY_FILE: "/somewhere/keys",
      TOKENKEEPER_CLIENT_SECRET: "client-secret-not-for-children",
      TOKENKEEPER_NOTIFY_WEBHOOK: "https://hooks.example/T000/secret-path",
      TOKENKEEPER_RUN_SECRET: "run-secret-not-for-children",
      TOKENKEEPER_STORE: "redis://:store-password@127.0.0.1:6379/0",
    };
    const notifier = new Notifier({ clock: systemClock, env, global: { command: `env > '${out}'` } });
    assert.equal(await notifier.notifyReauth(store, "c-env"), "sent");
    const seen = await readFile(out, "utf8");
    assert.match(seen, /^KEEP_ME=yes$/m);
    assert.match(seen, /^TOKENKEEPER_CONNECTOR=c-env$/m);
    for (const name of Object.keys(env).filter((k) => k.startsWith("TOKENKEEPER_")))
      assert.doesNotMatch(seen, new RegExp(`^${name}=`, "m"), `${name} reached the command`);
  });

  it("retries a failing webhook a bounded number of times, then releases the claim for a later retry", async () => {
    const store = new MemoryStore();
    await store.put("c3", deadRecord("c3"), null);
    hook.bodies.length = 0;
    hook.setStatus(503);
    const failures: string[] = [];
    const notifier = new Notifier({
      clock: systemClock,
      global: { webhook: hook.url },
      webhookAttempts: 3,
      webhookBackoffMs: 10,
      onFailure: (f) => failures.push(`${f.channel} ${f.target} ${f.error}`),
    });
    try {
      assert.equal(await notifier.notifyReauth(store, "c3"), "failed");
    } finally {
      hook.setStatus(200);
    }
    assert.equal(hook.bodies.length, 3, "three attempts");
    assert.equal(failures.length, 1);
    assert.ok(
      !failures[0]!.includes("secret-path-part"),
      "the webhook URL's path (often a secret) is never printed",
    );
    assert.equal((await store.get("c3"))!.record.state.notifiedAt, undefined, "claim released");
    // keepalive (or the next job) tries again and succeeds.
    assert.equal(await notifier.notifyReauth(store, "c3"), "sent");
    assert.equal(hook.bodies.length, 4);
  });

  it("does not retry a 4xx webhook answer", async () => {
    const store = new MemoryStore();
    await store.put("c4", deadRecord("c4"), null);
    hook.bodies.length = 0;
    hook.setStatus(404);
    try {
      const notifier = new Notifier({
        clock: systemClock,
        global: { webhook: hook.url },
        webhookBackoffMs: 10,
      });
      assert.equal(await notifier.notifyReauth(store, "c4"), "failed");
    } finally {
      hook.setStatus(200);
    }
    assert.equal(hook.bodies.length, 1);
  });

  it("kills a notification command that outlives its timeout", async () => {
    const store = new MemoryStore();
    await store.put("c5", deadRecord("c5"), null);
    const failures: string[] = [];
    const notifier = new Notifier({
      clock: systemClock,
      global: { command: "sleep 30" },
      commandTimeoutMs: 200,
      onFailure: (f) => failures.push(f.error),
    });
    const started = Date.now();
    assert.equal(await notifier.notifyReauth(store, "c5"), "failed");
    assert.ok(Date.now() - started < 2_000);
    assert.match(failures[0] ?? "", /timed out after 200 ms/);
  });

  it("does nothing for a healthy connector or without any target", async () => {
    const store = new MemoryStore();
    await store.put("ok", makeRecord("ok", {}, NOW), null);
    await store.put("c6", deadRecord("c6"), null);
    const withTarget = new Notifier({ clock: systemClock, global: { webhook: hook.url } });
    assert.equal(await withTarget.notifyReauth(store, "ok"), "not_needed");
    assert.equal(await new Notifier({ clock: systemClock }).notifyReauth(store, "c6"), "no_target");
    assert.equal(
      (await store.get("c6"))!.record.state.notifiedAt,
      undefined,
      "nothing claimed without a target",
    );
  });

  it("warns once per refresh-token expiry", async () => {
    const store = new MemoryStore();
    const r = makeRecord("c7", {}, NOW);
    await store.put("c7", { ...r, tokens: { ...r.tokens!, refreshTokenExpiresAt: NOW + 3_600_000 } }, null);
    hook.bodies.length = 0;
    const notifier = new Notifier({ clock: systemClock, global: { webhook: hook.url } });
    const warning = {
      connector: "c7",
      status: "degraded" as const,
      reason: "refresh_token_expiring",
      expires_at: null,
      refresh_token_expires_at: new Date(NOW + 3_600_000).toISOString(),
      detail: "expires soon",
      action: "run `tokenkeeper login …`",
      code: null,
      exit_code: 0,
      at: new Date().toISOString(),
    };
    assert.equal(await notifier.warnExpiry(store, "c7", 86_400_000, warning), "sent");
    assert.equal(await notifier.warnExpiry(store, "c7", 86_400_000, warning), "already_notified");
    assert.equal(hook.bodies.length, 1);
    assert.equal((hook.bodies[0] as { event: string }).event, "refresh_token_expiring");
    // Outside the warning period: nothing.
    assert.equal(await notifier.warnExpiry(store, "c7", 60_000, warning), "not_needed");
  });

  it("refuses a plain-HTTP webhook to a non-loopback host", () => {
    assert.throws(
      () => new Notifier({ clock: systemClock, global: { webhook: "http://alerts.example.com/hook" } }),
      ConfigError,
    );
  });
});
