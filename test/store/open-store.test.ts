import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { ConfigError, ConflictError, StoreKeyError } from "../../src/core/errors.js";
import { type ConnectorRecord, serializeRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import { FileStore } from "../../src/store/file-store.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { isNetworkStore, migrateStore, openStore } from "../../src/store/open-store.js";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { RedisStore } from "../../src/store/redis-store.js";
import { generateKey } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import { requirePostgres, requireRedis, Scratch } from "../support/services.js";

const env = { TOKENKEEPER_KEY: generateKey().export().reveal() };
const scratch = new Scratch();
const stores: Store[] = [];
const dirs: string[] = [];

async function open(
  url: string | undefined,
  options: Parameters<typeof openStore>[1] = { env },
): Promise<Store> {
  const store = await openStore(url, options);
  stores.push(store);
  if (isNetworkStore(store)) await store.migrate();
  return store;
}
function withToken(name: string, token: string): ConnectorRecord {
  return makeRecord(name, { tokens: makeTokens({ accessToken: new Secret(token) }) });
}

after(async () => {
  for (const s of stores) await s.close();
  await scratch.drop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("openStore", () => {
  it("opens Redis from a URL, sealing with the keyring from the environment", async (t) => {
    if (!(await requireRedis(t))) return;
    const store = await open(scratch.url("redis"));
    assert.ok(store instanceof RedisStore);
    assert.ok(isNetworkStore(store) && store.encrypted);
    await store.put("demo", makeRecord("demo"), null);
    assert.equal((await store.get("demo"))?.version, 1);
  });

  it("opens PostgreSQL from TOKENKEEPER_STORE when no URL is given", async (t) => {
    if (!(await requirePostgres(t))) return;
    const url = scratch.url("postgres").replace("postgres://", "postgresql://");
    const store = await open(undefined, { env: { ...env, TOKENKEEPER_STORE: url } });
    assert.ok(store instanceof PostgresStore);
    assert.ok(store.location.startsWith("postgresql://postgres@"));
    await store.put("demo", makeRecord("demo"), null);
    assert.deepEqual(await store.list(), ["demo"]);
  });

  it("requires a key for a network store unless the URL says encrypt=false", async () => {
    await assert.rejects(openStore("redis://127.0.0.1:1/0", { env: {} }), StoreKeyError);
    await assert.rejects(openStore("postgres://db/x", { env: {} }), StoreKeyError);
    const plain = await openStore("redis://127.0.0.1:1/0?encrypt=false", { env: {} });
    assert.ok(isNetworkStore(plain) && !plain.encrypted);
    await plain.close();
  });

  it("opens file:// URLs and, by default, the state directory as a FileStore", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tk-open-"));
    dirs.push(dir);
    const byUrl = await openStore(pathToFileURL(dir).href, { env: {} });
    assert.ok(byUrl instanceof FileStore);
    assert.equal(byUrl.dir, dir);
    const byDefault = await openStore(undefined, { env: { TOKENKEEPER_HOME: dir } });
    assert.ok(byDefault instanceof FileStore);
    assert.equal(byDefault.dir, dir);
    assert.equal(isNetworkStore(byDefault), false);
    await byUrl.close();
    await byDefault.close();
  });

  it("refuses an unknown scheme with ConfigError", async () => {
    await assert.rejects(openStore("mysql://db/x", { env }), ConfigError);
    await assert.rejects(openStore("not a url", { env }), ConfigError);
  });
});

describe("migrateStore", () => {
  it("round-trips every connector memory → Redis → PostgreSQL → memory", async (t) => {
    if (!(await requireRedis(t)) || !(await requirePostgres(t))) return;
    const names = ["alpha", "beta", "gamma", "delta"];
    const source = new MemoryStore();
    for (const name of names) await source.put(name, withToken(name, `token-of-${name}`), null);
    const redis = await open(scratch.url("redis"));
    const postgres = await open(scratch.url("postgres"));
    const back = new MemoryStore();

    for (const [from, to] of [
      [source, redis],
      [redis, postgres],
      [postgres, back],
    ] as const) {
      const report = await migrateStore(from, to);
      assert.deepEqual(
        report.copied.map((c) => c.name),
        [...names].sort(),
      );
      assert.equal(report.passes, 1);
    }
    for (const name of names) {
      const original = await source.get(name);
      const copy = await back.get(name);
      assert.deepEqual(serializeRecord(copy!.record), serializeRecord(original!.record));
    }
  });

  it("does not lose a rotation that lands during the migration: the connector is copied again", async (t) => {
    if (!(await requireRedis(t))) return;
    const names = ["a", "b", "c", "d"];
    const source = new MemoryStore();
    for (const name of names) await source.put(name, withToken(name, `${name}-v1`), null);
    const real = await open(scratch.url("redis"));

    // A refresher on another machine rotates "a" right after it was copied; the copy of the
    // last connector waits for that rotation, so it certainly lands before verification.
    let rotation: Promise<void> | undefined;
    const rotate = async () => {
      const lock = await source.lock("a", { leaseMs: 5_000, waitMs: 5_000 });
      const current = await source.get("a");
      await source.put("a", withToken("a", "a-v2-rotated"), current!.version);
      await lock.release();
    };
    const target: Store = {
      location: real.location,
      get: (n) => real.get(n),
      list: () => real.list(),
      delete: (n, v) => real.delete(n, v),
      lock: (n, o) => real.lock(n, o),
      close: () => real.close(),
      put: async (n, r, v) => {
        const version = await real.put(n, r, v);
        if (n === "a") rotation ??= rotate();
        if (n === "d") await rotation;
        return version;
      },
    };
    const report = await migrateStore(source, target);
    assert.equal(report.passes, 2);
    assert.equal((await real.get("a"))?.record.tokens?.accessToken.reveal(), "a-v2-rotated");
    assert.deepEqual(
      report.copied.find((c) => c.name === "a"),
      { name: "a", version: 2 },
    );
  });

  it("waits for a refresh in progress (the source lock) before copying that connector", async (t) => {
    if (!(await requirePostgres(t))) return;
    const source = new MemoryStore();
    await source.put("busy", withToken("busy", "busy-v1"), null);
    const target = await open(scratch.url("postgres"));
    const refresh = await source.lock("busy", { leaseMs: 5_000, waitMs: 100 });
    const migration = migrateStore(source, target);
    await sleep(100);
    assert.equal(await target.get("busy"), null, "nothing copied while the refresh holds the lock");
    await source.put("busy", withToken("busy", "busy-v2"), 1);
    await refresh.release();
    const report = await migration;
    assert.equal(report.passes, 1);
    assert.equal((await target.get("busy"))?.record.tokens?.accessToken.reveal(), "busy-v2");
  });

  it("gives up with ConflictError when the source never stands still", async () => {
    const source = new MemoryStore();
    await source.put("hot", withToken("hot", "hot-1"), null);
    // Every time the migration lets go of the lock, a refresh rotates the token.
    const restless: Store = {
      location: source.location,
      get: (n) => source.get(n),
      list: () => source.list(),
      put: (n, r, v) => source.put(n, r, v),
      delete: (n, v) => source.delete(n, v),
      close: () => source.close(),
      lock: async (n, o) => {
        const lock = await source.lock(n, o);
        return {
          name: lock.name,
          expiresAt: lock.expiresAt,
          held: () => lock.held(),
          remainingMs: () => lock.remainingMs(),
          release: async () => {
            await lock.release();
            const current = await source.get(n);
            await source.put(n, withToken(n, `hot-${current!.version + 1}`), current!.version);
          },
        };
      },
    };
    await assert.rejects(migrateStore(restless, new MemoryStore(), { maxPasses: 3 }), ConflictError);
  });
});
