/**
 * A newer token set written by another process (a `login --scope`, a login after logout) reaches
 * a running manager: at once after a refusal (newerToken), and within storeRecheckMs otherwise,
 * read in the background so that callers never wait and the hot path stays free of I/O.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";

class CountingStore extends MemoryStore {
  gets = 0;
  override async get(name: string) {
    this.gets++;
    return super.get(name);
  }
}

const START = Date.UTC(2030, 0, 1);

function recordWith(token: string, scope: string, now: number, createdAt = START) {
  return makeRecord(
    "demo",
    { scope, tokens: makeTokens({ accessToken: new Secret(token), scope }, now), createdAt },
    now,
  );
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

describe("token sets written by other processes", () => {
  it("are picked up within the recheck interval, off the callers' path", async () => {
    const clock = new ManualClock(START);
    const store = new CountingStore({ clock });
    await store.put("demo", recordWith("token-a", "read", START), null);
    const manager = new TokenManager({ store, clock, storeRecheckMs: 5_000 });

    assert.equal((await manager.getAccessToken("demo")).token.reveal(), "token-a");
    const readsAfterFirst = store.gets;
    // Another process logs in again with a wider scope.
    const current = (await store.get("demo"))!;
    await store.put("demo", recordWith("token-b", "read write", START), current.version);
    store.gets = readsAfterFirst;

    // Within the interval: memory only, no store read however many calls.
    for (let i = 0; i < 1_000; i++) await manager.getAccessToken("demo");
    assert.equal(store.gets, readsAfterFirst, "the hot path reads nothing");
    assert.equal((await manager.getAccessToken("demo")).token.reveal(), "token-a");

    // Past it: the caller still gets its answer from memory at once; one read runs behind it.
    await clock.advance(5_000);
    assert.equal((await manager.getAccessToken("demo")).token.reveal(), "token-a");
    await settle();
    assert.equal(store.gets, readsAfterFirst + 1);
    const next = await manager.getAccessToken("demo");
    assert.equal(next.token.reveal(), "token-b");
    assert.equal(next.scope, "read write");
    await manager.close();
  });

  it("after a logout and a new login (versions start over), the new connector wins", async () => {
    const clock = new ManualClock(START);
    const store = new CountingStore({ clock });
    await store.put("demo", recordWith("token-a", "read", START), null);
    const manager = new TokenManager({ store, clock, storeRecheckMs: 5_000 });
    // Several writes: the cached version is ahead of what a fresh connector starts at.
    for (let i = 0; i < 3; i++) {
      const v = (await store.get("demo"))!.version;
      await store.put("demo", recordWith("token-a", "read", START), v);
    }
    await manager.getAccessToken("demo");
    await store.delete("demo");
    await clock.advance(1_000);
    await store.put("demo", recordWith("token-new", "read", clock.now(), clock.now()), null);
    await clock.advance(5_000);
    await manager.getAccessToken("demo");
    await settle();
    assert.equal((await manager.getAccessToken("demo")).token.reveal(), "token-new");
    await manager.close();
  });

  it("after a refusal, newerToken reads the store once and hands a different token, or none", async () => {
    const clock = new ManualClock(START);
    const store = new CountingStore({ clock });
    await store.put("demo", recordWith("token-a", "read", START), null);
    const manager = new TokenManager({ store, clock, storeRecheckMs: 0 });
    const first = await manager.getAccessToken("demo");
    assert.equal(await manager.newerToken("demo", first.token), undefined, "nothing newer: no retry");
    const v = (await store.get("demo"))!.version;
    await store.put("demo", recordWith("token-b", "read write", START), v);
    const reads = store.gets;
    const newer = await manager.newerToken("demo", first.token);
    assert.equal(newer?.token.reveal(), "token-b");
    assert.equal(store.gets, reads + 1);
    assert.equal((await manager.getAccessToken("demo")).token.reveal(), "token-b");
    await manager.close();
  });
});
