/**
 * Record writes the manager owns for the CLI and the SDK provider: a settings change applied
 * onto the latest record (never rolling back a rotation), and every login saved one way (the
 * pure merge, under the refresh lock, compare-and-set).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { ConfigError, NotFoundError } from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { mergeLogin, withSettings } from "../../src/manager/transitions.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";

const T0 = Date.UTC(2030, 0, 1);

describe("the settings transition", () => {
  it("changes only the settings and the update time, and leaves its input alone", () => {
    const current = makeRecord("a", { settings: { refreshAheadMs: 1_000, notifyCommand: "true" } }, T0);
    const next = withSettings(current, (s) => ({ ...s, refreshAheadMs: 2_000 }), T0 + 5);
    assert.deepEqual(next.settings, { refreshAheadMs: 2_000, notifyCommand: "true" });
    assert.equal(next.updatedAt, T0 + 5);
    assert.equal(next.tokens, current.tokens);
    assert.equal(next.state, current.state);
    assert.deepEqual(current.settings, { refreshAheadMs: 1_000, notifyCommand: "true" });
  });
});

describe("the manager's settings change", () => {
  it("lands on the latest record: a rotation written meanwhile by another process is kept", async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    await store.put("a", makeRecord("a", {}, T0), null);
    const manager = new TokenManager({ store, clock });
    await manager.record("a"); // the manager now holds version 1
    const rotated = makeTokens({ refreshToken: new Secret("refresh-token-value-rotated") }, T0 + 1);
    const v1 = (await store.get("a"))!;
    await store.put("a", { ...v1.record, tokens: rotated }, v1.version);
    await clock.advance(10);

    const settings = await manager.updateSettings("a", (s) => ({ ...s, refreshAheadMs: 60_000 }));
    assert.deepEqual(settings, { refreshAheadMs: 60_000 });
    const stored = (await store.get("a"))!;
    assert.equal(stored.version, 3);
    assert.ok(stored.record.tokens!.refreshToken!.equals(rotated.refreshToken!), "the rotation stays");
    assert.equal(stored.record.updatedAt, T0 + 10);
    // The manager saw its own write: no read needed for the new settings.
    assert.equal((await manager.record("a")).settings.refreshAheadMs, 60_000);
    await assert.rejects(
      manager.updateSettings("missing", (s) => s),
      (e) => e instanceof NotFoundError,
    );
    await manager.close();
  });
});

describe("the manager's login write", () => {
  it("saves a new connector's record, and merges with one created meanwhile for the same server", async () => {
    const store = new MemoryStore();
    const manager = new TokenManager({ store });
    const fresh = makeRecord("n", {}, Date.now());
    const saved = await manager.saveLoginRecord(fresh, null);
    assert.equal(saved.version, 1);
    assert.equal((await store.get("n"))?.version, 1);

    // Someone configured the connector after this login read "no connector": their settings stay.
    const other = makeRecord("m", { settings: { notifyCommand: "true" } }, Date.now() - 1_000);
    await store.put("m", other, null);
    const login = makeRecord("m", {}, Date.now());
    const merged = await manager.saveLoginRecord(login, null);
    assert.deepEqual(merged.record.settings, { notifyCommand: "true" });
    assert.equal(merged.record.createdAt, other.createdAt);
    assert.equal(merged.record.tokens, login.tokens);
    assert.deepEqual({ ...merged.record, updatedAt: 0 }, { ...mergeLogin(login, other), updatedAt: 0 });
    assert.equal((await store.get("m"))?.version, 2);
    await manager.close();
  });

  it("refuses to save over a connector re-created for another server, and writes nothing", async () => {
    const store = new MemoryStore();
    const manager = new TokenManager({ store });
    const elsewhere = makeRecord("x", {}, Date.now());
    elsewhere.server = { ...elsewhere.server, mcpUrl: "https://other.example.test/mcp" };
    await store.put("x", elsewhere, null);
    await assert.rejects(
      manager.saveLoginRecord(makeRecord("x", {}, Date.now()), null),
      (e) => e instanceof ConfigError,
    );
    assert.equal((await store.get("x"))?.version, 1);
    await manager.close();
  });

  it("an SDK login waits for the refresh lock, like every login, then writes onto the latest record", async () => {
    const store = new MemoryStore({ pollMs: 5 });
    await store.put("s", makeRecord("s", { settings: { refreshAheadMs: 7 } }, Date.now()), null);
    const manager = new TokenManager({ store });
    const held = await store.lock("s", { leaseMs: 30_000, waitMs: 1_000 });
    const tokens = makeTokens({ refreshToken: new Secret("refresh-token-value-sdk-login") }, Date.now());
    const saving = manager.saveLogin("s", () => ({ tokens, rotated: true }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal((await store.get("s"))?.version, 1, "nothing written while a refresher holds the lock");
    await held.release();
    await saving;
    const stored = (await store.get("s"))!;
    assert.equal(stored.version, 2);
    assert.ok(stored.record.tokens!.refreshToken!.equals(tokens.refreshToken!));
    assert.equal(stored.record.state.rotationCount, 1);
    assert.deepEqual(stored.record.settings, { refreshAheadMs: 7 });
    await assert.rejects(
      manager.saveLogin("gone", () => ({ tokens, rotated: false })),
      (e) => e instanceof NotFoundError,
    );
    await manager.close();
  });
});

describe("after a login made elsewhere", () => {
  it("lastSeen answers from memory; reload forgets it and reads the new grant at once", async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    await store.put("a", makeRecord("a", {}, T0), null);
    const manager = new TokenManager({ store, clock, reauthRecheckMs: 60_000 });
    assert.equal(manager.lastSeen("a"), undefined, "no I/O before first use");
    const old = await manager.record("a");
    // A sign-in in another component saves a new grant.
    const signedIn = makeTokens({ refreshToken: new Secret("refresh-token-value-signed-in") }, T0 + 1);
    await store.put("a", { ...old, tokens: signedIn }, 1);
    assert.equal(manager.lastSeen("a"), old, "memory, not the store");

    const view = await manager.reload("a");
    assert.equal(view.expiresAt, signedIn.expiresAt);
    assert.ok(manager.lastSeen("a")!.tokens!.refreshToken!.equals(signedIn.refreshToken!));
    // The forgetting happens on the call: a failed read leaves nothing stale behind.
    await store.delete("a");
    const reloading = manager.reload("a");
    assert.equal(manager.lastSeen("a"), undefined);
    await assert.rejects(reloading, (e) => e instanceof NotFoundError);
    await manager.close();
  });
});
