import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  ConfigError,
  LockTimeoutError,
  StoreCorruptError,
  StoreKeyError,
  StoreUnavailableError,
} from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { RedisStore } from "../../src/store/redis-store.js";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import {
  dropRedisPrefix,
  killHard,
  REDIS_URL,
  requireRedis,
  serviceGate,
  silentServer,
  spawnLockHolder,
  uniqueSuffix,
} from "../support/services.js";
import { describeStoreConformance } from "./conformance.js";

const prefixes: string[] = [];
function newPrefix(): string {
  const prefix = `tokenkeeper-test:${uniqueSuffix()}:`;
  prefixes.push(prefix);
  return prefix;
}
const ring = (...keys: ReturnType<typeof generateKey>[]) => new Keyring(keys[0]!, keys.slice(1));

async function rawClient() {
  const { Redis } = await import("ioredis");
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, commandTimeout: 2_000 });
  client.on("error", () => {});
  return client;
}

if (await serviceGate("redis")) {
  describeStoreConformance("redis", {
    async create() {
      const prefix = newPrefix();
      const keyring = ring(generateKey());
      const open = () => new RedisStore({ url: REDIS_URL, prefix, keyring });
      return { store: open(), second: async () => open(), cleanup: () => dropRedisPrefix(prefix) };
    },
  });
}

describe("RedisStore", () => {
  const opened: RedisStore[] = [];
  const open = (options: Partial<ConstructorParameters<typeof RedisStore>[0]> = {}) => {
    const store = new RedisStore({
      url: REDIS_URL,
      prefix: newPrefix(),
      keyring: ring(generateKey()),
      ...options,
    });
    opened.push(store);
    return store;
  };
  after(async () => {
    for (const s of opened) await s.close();
    for (const p of prefixes) await dropRedisPrefix(p).catch(() => {});
  });

  it("frees the lock of a holder that was SIGKILLed once its lease runs out", async (t) => {
    if (!(await requireRedis(t))) return;
    const prefix = newPrefix();
    const url = `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}&encrypt=false`;
    const store = open({ prefix, encrypt: false, keyring: null });
    const { child, expiresAt } = await spawnLockHolder(url, "killed", 1_000);
    await killHard(child);
    // Dead, but its lease still stands: no one may take the lock yet.
    await assert.rejects(store.lock("killed", { leaseMs: 5_000, waitMs: 0 }), LockTimeoutError);
    const lock = await store.lock("killed", { leaseMs: 5_000, waitMs: 3_000 });
    const late = Date.now() - expiresAt;
    assert.ok(lock.held());
    // The child's expiresAt errs early (counted from before its request), never late.
    assert.ok(late >= 0, `taken only after the dead holder's lease (${late} ms after it ended)`);
    assert.ok(late < 1_000, `taken soon after the lease ran out (${late} ms)`);
    await lock.release();
  });

  it("seals records at rest: the raw value holds no token, under the current key id", async (t) => {
    if (!(await requireRedis(t))) return;
    const key = generateKey();
    const prefix = newPrefix();
    const store = open({ prefix, keyring: ring(key) });
    await store.put("sealed", makeRecord("sealed"), null);
    const redis = await rawClient();
    try {
      const raw = await redis.hget(`${prefix}c:sealed`, "s");
      assert.ok(raw);
      assert.match(raw, new RegExp(`^tk1\\.${key.id}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]+$`));
      for (const secret of [
        "access-token-value-0001",
        "refresh-token-value-0001",
        "mcp.example.test",
        "client-123",
      ]) {
        assert.ok(!raw.includes(secret), `raw value must not contain ${secret}`);
      }
      // Copied onto another connector's entry, the blob does not open (the name is in the AAD).
      await store.put("other", makeRecord("other"), null);
      await redis.hset(`${prefix}c:other`, "s", raw);
      await assert.rejects(store.get("other"), StoreCorruptError);
    } finally {
      redis.disconnect();
    }
  });

  it("refuses to read a record sealed under a key it lacks, and leaves the record intact", async (t) => {
    if (!(await requireRedis(t))) return;
    const prefix = newPrefix();
    const k1 = generateKey();
    const writer = open({ prefix, keyring: ring(k1) });
    await writer.put("secret", makeRecord("secret"), null);
    const redis = await rawClient();
    const before = await redis.hgetall(`${prefix}c:secret`);

    const stranger = open({ prefix, keyring: ring(generateKey()) });
    const error = await stranger.get("secret").then(
      () => assert.fail("read with the wrong key"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StoreKeyError);
    assert.equal(error.code, "store_key");
    assert.match(error.message, /connector "secret"/);
    assert.ok(error.message.includes(k1.id), "names the key the record needs");
    // Without any key, opening a sealing store is refused outright.
    assert.throws(() => new RedisStore({ url: REDIS_URL, prefix }), StoreKeyError);
    // With encryption off, the sealed record is not mistaken for damage.
    await assert.rejects(open({ prefix, encrypt: false, keyring: null }).get("secret"), StoreKeyError);

    assert.deepEqual(await redis.hgetall(`${prefix}c:secret`), before);
    redis.disconnect();
    assert.equal(
      (await writer.get("secret"))?.record.tokens?.accessToken.reveal(),
      "access-token-value-0001",
    );
  });

  it("rotates the key: every record re-sealed, a concurrent refresh kept, the old key removable", async (t) => {
    if (!(await requireRedis(t))) return;
    const prefix = newPrefix();
    const k1 = generateKey();
    const k2 = generateKey();
    const names = Array.from({ length: 8 }, (_, i) => `conn-${i}`);
    const store = open({ prefix, keyring: ring(k1) });
    for (const name of names) await store.put(name, makeRecord(name), null);

    // Another machine that already has the new key keeps refreshing during the rotation.
    const refresher = open({ prefix, keyring: ring(k2, k1) });
    const refreshes = (async () => {
      for (const name of names) {
        for (;;) {
          const current = await refresher.get(name);
          const next = makeRecord(name, {
            tokens: makeTokens({ accessToken: new Secret(`rotated-${name}`) }),
          });
          try {
            await refresher.put(name, next, current!.version);
            break;
          } catch {}
        }
      }
    })();
    const report = await store.rotateKey(ring(k2, k1));
    await refreshes;
    assert.equal(report.keyId, k2.id);
    assert.equal(report.resealed.length + report.unchanged.length, names.length);

    const newOnly = open({ prefix, keyring: ring(k2) });
    for (const name of names) {
      const got = await newOnly.get(name);
      assert.equal(
        got?.record.tokens?.accessToken.reveal(),
        `rotated-${name}`,
        `${name}: the refresh was not lost`,
      );
    }
    await assert.rejects(open({ prefix, keyring: ring(k1) }).get(names[0]!), StoreKeyError);
  });

  it("fails fast with StoreUnavailableError, and no password, when the server is unreachable", async () => {
    const store = open({ url: "redis://:hunter2@127.0.0.1:1/0" });
    assert.equal(store.location, "redis://:***@127.0.0.1:1/0?prefix=" + encodeURIComponent(store.prefix));
    for (const attempt of [() => store.get("x"), () => store.lock("x", { leaseMs: 1_000, waitMs: 10_000 })]) {
      const started = Date.now();
      const error = await attempt().then(
        () => assert.fail("succeeded against a closed port"),
        (e: unknown) => e,
      );
      assert.ok(Date.now() - started < 3_000, `gave up within 3 s (${Date.now() - started} ms)`);
      assert.ok(error instanceof StoreUnavailableError);
      assert.equal(error.code, "store_unavailable");
      assert.ok(error.message.includes("redis://:***@127.0.0.1:1/0"), error.message);
      assert.ok(!JSON.stringify(error.toJSON()).includes("hunter2"));
      assert.ok(!error.message.includes("hunter2"));
    }
  });

  it("bounds every command when the server accepts connections but never answers", async () => {
    const server = await silentServer();
    try {
      const store = open({
        url: `redis://127.0.0.1:${server.port}/0`,
        commandTimeoutMs: 300,
        connectTimeoutMs: 300,
      });
      const started = Date.now();
      await assert.rejects(store.put("x", makeRecord("x"), null), StoreUnavailableError);
      assert.ok(Date.now() - started < 2_000, `gave up in ${Date.now() - started} ms`);
    } finally {
      await server.close();
    }
  });

  it("describes itself without secrets and validates its URL", () => {
    const plain = { encrypt: false, keyring: null };
    assert.equal(
      new RedisStore({ url: "redis://ops:pw@cache:6380/2", ...plain }).location,
      "redis://ops:***@cache:6380/2",
    );
    assert.equal(new RedisStore({ url: "rediss://cache", ...plain }).location, "rediss://cache/0");
    assert.equal(
      new RedisStore({ url: "redis://cache?prefix=team-a:&encrypt=false" }).location,
      "redis://cache/0?prefix=team-a%3A",
    );
    assert.throws(() => new RedisStore({ url: "http://cache", ...plain }), ConfigError);
    assert.throws(() => new RedisStore({ url: "redis://cache?encrypt=nope", ...plain }), ConfigError);
  });
});
