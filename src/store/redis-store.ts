/**
 * A Store on Redis, so a team's machines share one authorization. Requires the optional
 * `ioredis` driver, loaded only when a RedisStore is first used.
 *
 * Layout, under a prefix (default `tokenkeeper:`, for namespacing several deployments or test
 * runs on one server):
 *   <prefix>c:<name>     hash {v: version, s: sealed record}: one key, so a read is atomic;
 *   <prefix>names        set of connector names, so list() needs no KEYS/SCAN;
 *   <prefix>lock:<name>  the refresh lock: a random owner token with a PX lease.
 * Writes and deletes are Lua scripts: Redis runs a script atomically, so the version check, the
 * write and the index update cannot interleave with another client's.
 *
 * URL: `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS). Tokenkeeper's own query
 * parameters: `prefix=` and `encrypt=false` (store records unsealed; only for tests or a store
 * that is encrypted by other means). Standalone servers only: the scripts touch two keys, which
 * Redis Cluster would need in one hash slot.
 *
 * Durability is the server's: Redis acknowledges a write once it is in memory. A rotated refresh
 * token lost in a crash cannot be recovered, so run the server with `appendonly yes` and
 * `appendfsync always` (or `everysec`, accepting up to a second of loss).
 */
import type { Redis, RedisOptions } from "ioredis";
import {
  ConfigError,
  ConflictError,
  StoreCorruptError,
  StoreUnavailableError,
  TokenkeeperError,
} from "../core/errors.js";
import { assertConnectorName } from "../core/record.js";
import { LazyClient, loadOptionalDriver, NetworkStoreBase, type NetworkStoreOptions } from "./network.js";
import { parseNetworkStoreUrl, redactedUserInfo } from "./store-url.js";

export const DEFAULT_REDIS_PREFIX = "tokenkeeper:";

export interface RedisStoreOptions extends NetworkStoreOptions {
  /** `redis://` or `rediss://`; may carry `prefix=` and `encrypt=false` query parameters. */
  url: string;
  /** Key prefix; overrides the URL's `prefix=`. */
  prefix?: string;
  /** Bound on every command, including time spent queued while reconnecting (default 2000). */
  commandTimeoutMs?: number;
}

// KEYS[1] record hash, KEYS[2] names set; ARGV[1] expected version ("" = must be absent),
// ARGV[2] sealed text, ARGV[3] name. Returns {1, newVersion} or {0, actualVersion or ""}.
const PUT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if cur then return {0, cur} end
elseif cur ~= ARGV[1] then
  return {0, cur or ''}
end
local v = (tonumber(cur) or 0) + 1
redis.call('HSET', KEYS[1], 'v', tostring(v), 's', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return {1, v}
`;

// KEYS as above; ARGV[1] expected version ("" = any), ARGV[2] name.
// Returns {1, v} deleted, {0, ""} absent, {-1, actual} version mismatch.
const DELETE_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then
  redis.call('SREM', KEYS[2], ARGV[2])
  return {0, ''}
end
if ARGV[1] ~= '' and cur ~= ARGV[1] then return {-1, cur} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return {1, cur}
`;

// Deletes the lock only if we still own it: after our lease ran out someone else may hold it.
const UNLOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// The lease left on the lock if we still own it (PTTL, ms by the server's clock), else -2.
const LEASE_LEFT_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PTTL', KEYS[1]) end
return -2
`;

type ScriptReply = [number, number | string];

interface ScriptedRedis extends Redis {
  tkPut(record: string, names: string, expected: string, text: string, name: string): Promise<ScriptReply>;
  tkDelete(record: string, names: string, expected: string, name: string): Promise<ScriptReply>;
  tkUnlock(lock: string, token: string): Promise<number>;
  tkLeaseLeft(lock: string, token: string): Promise<number>;
}

export class RedisStore extends NetworkStoreBase {
  readonly prefix: string;
  readonly #url: string;
  readonly #commandTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #client = new LazyClient(() => this.#createClient(), this.location);
  #lastConnectionError: string | null = null;

  constructor(options: RedisStoreOptions) {
    const parsed = parseNetworkStoreUrl(options.url, "redis");
    const url = parsed.driverUrl;
    const prefix = options.prefix ?? parsed.params.prefix ?? DEFAULT_REDIS_PREFIX;
    if (prefix.length === 0) throw new ConfigError("the Redis key prefix must not be empty");
    super(redactRedisUrl(url, prefix), options, parsed.encrypt);
    this.prefix = prefix;
    this.#url = url.toString();
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 2_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  }

  #recordKey(name: string): string {
    return `${this.prefix}c:${name}`;
  }
  get #namesKey(): string {
    return `${this.prefix}names`;
  }
  #lockKey(name: string): string {
    return `${this.prefix}lock:${name}`;
  }

  override async list(): Promise<string[]> {
    const names = await this.#run("list", (c) => c.smembers(this.#namesKey));
    return names.sort();
  }

  override async delete(name: string, expectedVersion?: number): Promise<boolean> {
    assertConnectorName(name);
    const [status, value] = await this.#run("delete", (c) =>
      c.tkDelete(
        this.#recordKey(name),
        this.#namesKey,
        expectedVersion === undefined ? "" : String(expectedVersion),
        name,
      ),
    );
    if (status === -1) throw new ConflictError(name, expectedVersion ?? null, Number(value));
    return status === 1;
  }

  // The lease starts when Redis runs SET, which is after we sent it. Redis leases are relative
  // (PX), so its end is by our clock: counted from the send, it errs early by the round trip,
  // never late.
  protected override async takeLease(
    name: string,
    token: string,
    leaseMs: number,
    sentAt: number,
  ): Promise<number | null> {
    const ok = await this.#run("lock", (c) => c.set(this.#lockKey(name), token, "PX", leaseMs, "NX"));
    return ok === "OK" ? sentAt + leaseMs : null;
  }

  protected override async dropLease(name: string, token: string): Promise<void> {
    await this.#run("unlock", (c) => c.tkUnlock(this.#lockKey(name), token));
  }

  protected override async leaseLeft(name: string, token: string): Promise<number> {
    // One script, so "still ours" and "how long" are read at the same instant.
    return Number(await this.#run("check lock", (c) => c.tkLeaseLeft(this.#lockKey(name), token)));
  }

  /** Nothing to create on Redis; present so `store init` treats every network store alike. */
  override async migrate(): Promise<{ applied: number[]; current: number }> {
    await this.#run("ping", (c) => c.ping());
    return { applied: [], current: 0 };
  }

  protected override async getRaw(name: string): Promise<{ text: string; version: number } | null> {
    const [v, s] = await this.#run("get", (c) => c.hmget(this.#recordKey(name), "v", "s"));
    if (v == null) return null;
    if (s == null) {
      throw new StoreCorruptError(`connector "${name}" in ${this.location} has a version but no record`, {
        connector: name,
        store: this.location,
      });
    }
    return { text: s, version: Number(v) };
  }

  protected override async putRaw(
    name: string,
    text: string,
    expectedVersion: number | null,
  ): Promise<number> {
    const [ok, value] = await this.#run("put", (c) =>
      c.tkPut(
        this.#recordKey(name),
        this.#namesKey,
        expectedVersion === null ? "" : String(expectedVersion),
        text,
        name,
      ),
    );
    if (ok !== 1) throw new ConflictError(name, expectedVersion, value === "" ? null : Number(value));
    return Number(value);
  }

  override async close(): Promise<void> {
    const client = await this.#client.close();
    if (!client) return;
    if (client.status === "ready") {
      // QUIT waits for pending replies; bounded so close() cannot hang on a dead server.
      const stop = new AbortController();
      await Promise.race([
        client.quit().catch(() => {}),
        this.clock.sleep(this.#commandTimeoutMs, stop.signal).catch(() => {}),
      ]);
      // Cancels the timer, which would otherwise keep the process alive after a prompt QUIT.
      stop.abort();
    }
    client.disconnect();
  }

  /** Runs one command, turning driver and network failures into StoreUnavailableError. */
  async #run<T>(what: string, command: (client: ScriptedRedis) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    try {
      return await command(client);
    } catch (e) {
      if (e instanceof TokenkeeperError) throw e;
      // The driver's error may carry the command and its arguments (a record, when encryption
      // is off): keep only its message, never the error object.
      const message = e instanceof Error ? e.message : String(e);
      const reason =
        client.status !== "ready" && this.#lastConnectionError
          ? `is unreachable (${this.#lastConnectionError})`
          : `failed to ${what}: ${message}`;
      throw new StoreUnavailableError(`Redis store ${this.location} ${reason}`, { store: this.location });
    }
  }

  async #connect(): Promise<ScriptedRedis> {
    const client = await this.#client.get();
    // "end" is terminal in ioredis (no more reconnection): start over with a fresh client.
    return client.status === "end" ? this.#client.renew() : client;
  }

  async #createClient(): Promise<ScriptedRedis> {
    const { Redis } = await loadDriver();
    const options: RedisOptions = {
      lazyConnect: true,
      connectTimeout: this.#connectTimeoutMs,
      commandTimeout: this.#commandTimeoutMs,
      // A command waits for at most one reconnection before failing; with commandTimeout this
      // bounds every call, while the client keeps reconnecting in the background.
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
      enableOfflineQueue: true,
      // How long disconnect() lets a socket linger before destroying it. The timer runs in full
      // when the socket is already gone (server unreachable), keeping the process alive.
      disconnectTimeout: 250,
      connectionName: "tokenkeeper",
      scripts: {
        tkPut: { lua: PUT_SCRIPT, numberOfKeys: 2 },
        tkDelete: { lua: DELETE_SCRIPT, numberOfKeys: 2 },
        tkUnlock: { lua: UNLOCK_SCRIPT, numberOfKeys: 1 },
        tkLeaseLeft: { lua: LEASE_LEFT_SCRIPT, numberOfKeys: 1 },
      },
    };
    const client = new Redis(this.#url, options) as ScriptedRedis;
    // Without a listener ioredis prints every connection error to stderr; we report them
    // through the failing command instead.
    client.on("error", (e: Error) => {
      this.#lastConnectionError = e.message;
    });
    client.on("ready", () => {
      this.#lastConnectionError = null;
    });
    return client;
  }
}

function loadDriver(): Promise<{ Redis: typeof Redis }> {
  return loadOptionalDriver(async () => ({ Redis: (await import("ioredis")).Redis }), "ioredis", "Redis");
}

/** `redis://:***@host:port/db`: the password never appears; the prefix does when it is not the default. */
export function redactRedisUrl(url: URL, prefix = DEFAULT_REDIS_PREFIX): string {
  const auth = redactedUserInfo(url);
  const db = url.pathname && url.pathname !== "/" ? url.pathname : "/0";
  const query = prefix !== DEFAULT_REDIS_PREFIX ? `?prefix=${encodeURIComponent(prefix)}` : "";
  return `${url.protocol}//${auth}${url.host}${db}${query}`;
}
