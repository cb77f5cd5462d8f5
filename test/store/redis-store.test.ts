import assert from "node:assert/strict";
import { it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { RedisStore } from "../../src/store/redis-store.js";
import { withRedis } from "../support/services.js";
import { describeNetworkStore, type NetworkStoreTarget } from "./network-store-suite.js";

/** A connector's hash: `v` its version, `s` its sealed record. */
const recordKey = (store: RedisStore, name: string) => `${store.prefix}c:${name}`;

const redis: NetworkStoreTarget<RedisStore> = {
  service: "redis",
  open: ({ url, keyring, encrypt, timeoutMs }) =>
    new RedisStore({ url, keyring, encrypt, commandTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs }),
  rawRecord: "raw value",
  call: "command",
  async readRaw(store, name) {
    const [v, s] = await withRedis((c) => c.hmget(recordKey(store, name), "v", "s"));
    return v == null || s == null ? undefined : { sealed: s, version: Number(v) };
  },
  async writeRaw(store, name, sealed) {
    await withRedis((c) => c.hset(recordKey(store, name), "s", sealed));
  },
  snapshot: (store, name) => withRedis((c) => c.hgetall(recordKey(store, name))),
  async dropLockRaw(store, name) {
    await withRedis((c) => c.del(`${store.prefix}lock:${name}`));
  },
  unreachable: {
    url: "redis://:hunter2@127.0.0.1:1/0?prefix=tokenkeeper-test:unreachable:",
    location: "redis://:***@127.0.0.1:1/0?prefix=tokenkeeper-test%3Aunreachable%3A",
  },
};

await describeNetworkStore("RedisStore", redis, () => {
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
