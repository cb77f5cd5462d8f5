/**
 * The real Redis and PostgreSQL servers the network-store tests run against, the scratch
 * namespaces tests use on them, and the rule for when one is missing: on a developer machine
 * the tests are skipped, loudly, with how to start the server; under CI (`CI` set) they fail,
 * because a silently skipped store test is a store that is not tested.
 *
 * Override the addresses with TOKENKEEPER_TEST_REDIS_URL / TOKENKEEPER_TEST_POSTGRES_URL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { it, type TestContext } from "node:test";
import type { Redis } from "ioredis";
import { isNetworkStore, openStore } from "../../src/store/open-store.js";
import type { Keyring } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";

export const REDIS_URL = process.env.TOKENKEEPER_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/0";
export const POSTGRES_URL =
  process.env.TOKENKEEPER_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const PROBE_TIMEOUT_MS = 1_000;

const HOW_TO_START = {
  redis:
    "start it with `redis-server --daemonize yes --port 6379 --save '' --appendonly no` " +
    "(or set TOKENKEEPER_TEST_REDIS_URL)",
  postgres:
    "start PostgreSQL with trust auth for user postgres and a database named test " +
    "(or set TOKENKEEPER_TEST_POSTGRES_URL)",
} as const;

export type Service = keyof typeof HOW_TO_START;

function address(url: string): string {
  const u = new URL(url);
  return u.host;
}

/** Sends PING over a raw socket: no driver involved, so a driver bug cannot hide the server. */
export function redisAvailable(url = REDIS_URL): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    // "-NOAUTH" also proves a server is there; the tests will then report the auth problem.
    socket.on("data", (data) => done(/^[+-]/.test(data.toString())));
  });
}

/** Connects with the pg driver and runs SELECT 1 (it also proves the database and role exist). */
export async function postgresAvailable(url = POSTGRES_URL): Promise<boolean> {
  try {
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      return true;
    } finally {
      await client.end().catch(() => {});
    }
  } catch {
    return false;
  }
}

const probes = new Map<Service, Promise<boolean>>();
function available(service: Service): Promise<boolean> {
  let probe = probes.get(service);
  if (!probe) {
    probe = service === "redis" ? redisAvailable() : postgresAvailable();
    probes.set(service, probe);
  }
  return probe;
}

function missingMessage(service: Service): string {
  const url = service === "redis" ? REDIS_URL : POSTGRES_URL;
  const label = service === "redis" ? "Redis" : "PostgreSQL";
  return `${label} not reachable at ${address(url)} — ${HOW_TO_START[service]} to run these tests`;
}

/**
 * In a test: true when the service is up. Otherwise fails under CI, or skips the test (with a
 * warning) and returns false, so the test can `return`.
 */
export async function requireService(service: Service, t: TestContext): Promise<boolean> {
  if (await available(service)) return true;
  const message = missingMessage(service);
  if (process.env.CI) throw new Error(`${message} (CI must not skip store tests)`);
  console.warn(`WARNING: ${message}`);
  t.skip(message);
  return false;
}

export const requireRedis = (t: TestContext) => requireService("redis", t);
export const requirePostgres = (t: TestContext) => requireService("postgres", t);

/**
 * For a test file that registers suites at top level (describe/it): true when the service is
 * up; otherwise registers one test that fails under CI or is skipped with the reason.
 */
export async function serviceGate(service: Service): Promise<boolean> {
  if (await available(service)) return true;
  it(`${service} is reachable`, (t) => requireService(service, t).then(() => {}));
  return false;
}

/** A namespace unique to this run, so concurrent runs and leftovers never collide. */
export function uniqueSuffix(): string {
  return `${process.pid}_${randomBytes(4).toString("hex")}`;
}

/** `url` with query parameters set (e.g. prefix or schema). */
export function withParams(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

/**
 * Namespaces of their own on the test servers (a Redis key prefix, a PostgreSQL schema), each
 * unique to this run; drop() removes every one handed out. One per test file, or per test.
 */
export class Scratch {
  readonly #drops: (() => Promise<void>)[] = [];

  /**
   * The test server's URL for `service`, naming a namespace of its own: `prefix=` for Redis,
   * `schema=` for PostgreSQL (the store's migrate() creates the schema).
   */
  url(service: Service): string {
    const suffix = uniqueSuffix();
    if (service === "redis") {
      const prefix = `tokenkeeper-test:${suffix}:`;
      this.#drops.push(() => dropRedisPrefix(prefix));
      return withParams(REDIS_URL, { prefix });
    }
    const schema = `tk_test_${suffix}`;
    this.#drops.push(() => dropPostgresSchema(schema));
    return withParams(POSTGRES_URL, { schema });
  }

  /** Removes every namespace handed out so far; one that fails to go does not keep the others. */
  async drop(): Promise<void> {
    for (const drop of this.#drops.splice(0)) await drop().catch(() => {});
  }
}

/**
 * Runs `body` in a namespace of its own on `service`'s test server: `url` names it, `store` is
 * opened there with `keyring` and prepared (tables created). Afterwards, whatever `body` did,
 * the store is closed and the namespace dropped.
 */
export async function withScratchStore(
  service: Service,
  keyring: Keyring,
  body: (url: string, store: Store) => Promise<void>,
): Promise<void> {
  const scratch = new Scratch();
  const url = scratch.url(service);
  const store = await openStore(url, { env: {}, keyring });
  try {
    if (isNetworkStore(store)) await store.migrate();
    await body(url, store);
  } finally {
    await store.close();
    await scratch.drop();
  }
}

/** Runs `run` on a short-lived Redis connection (raw access for assertions and cleanup). */
export async function withRedis<T>(run: (client: Redis) => Promise<T>, url = REDIS_URL): Promise<T> {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 2_000 });
  client.on("error", () => {});
  try {
    return await run(client);
  } finally {
    client.disconnect();
  }
}

/** Deletes every Redis key under `prefix` (SCAN, not KEYS, so a shared server is not blocked). */
export function dropRedisPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  return withRedis(async (client) => {
    let cursor = "0";
    do {
      const [next, keys] = await client.scan(
        cursor,
        "MATCH",
        `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
        "COUNT",
        500,
      );
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== "0");
  }, url);
}

/** Runs one statement on a short-lived connection (raw access for assertions and cleanup). */
export async function postgresQuery<R = Record<string, unknown>>(
  text: string,
  values: unknown[] = [],
  url = POSTGRES_URL,
): Promise<R[]> {
  const { default: pg } = await import("pg");
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 2_000,
    query_timeout: 5_000,
  });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query(text, values)).rows as R[];
  } finally {
    await client.end().catch(() => {});
  }
}

export async function dropPostgresSchema(schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`refusing to drop schema ${schema}`);
  await postgresQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/**
 * A separate process that opens `storeUrl`, takes the refresh lock for `name` with the given
 * lease, reports the lease's end (`expiresAt`, by the store's clock; on this host all clocks
 * are one) and then idles until killed: a holder that dies without releasing.
 */
export async function spawnLockHolder(
  storeUrl: string,
  name: string,
  leaseMs: number,
): Promise<{ child: ChildProcess; expiresAt: number }> {
  const openStoreUrl = new URL("../../src/store/open-store.ts", import.meta.url).href;
  const code = `
    const { openStore } = await import(${JSON.stringify(openStoreUrl)});
    const store = await openStore(${JSON.stringify(storeUrl)}, { env: {} });
    const lock = await store.lock(${JSON.stringify(name)}, { leaseMs: ${leaseMs}, waitMs: 5000 });
    process.stdout.write("locked " + lock.expiresAt + "\\n");
    setInterval(() => {}, 60000);
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const expiresAt = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`lock holder did not start within 10 s: ${stderr}`));
    }, 10_000);
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      const match = /locked (\d+(?:\.\d+)?)\n/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`lock holder exited (${code}) before taking the lock: ${stderr}`));
    });
  });
  return { child, expiresAt };
}

export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

/** A TCP server that accepts connections and never says a word: a hung store server. */
export async function silentServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
