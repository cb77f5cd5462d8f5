/**
 * The window a crash can still lose a rotation in, for each store (file, Redis, PostgreSQL):
 * from the moment the token endpoint's answer reaches us (response headers: the server has
 * already rotated the refresh token) to the moment the new token set is durable in the store
 * (put resolved). A process that dies inside this window leaves the store holding a refresh
 * token the server considers spent; the next refresh presents it, and the grant is revoked.
 * The window is split into the part spent reading and validating the answer and building the
 * record (answer → put starts) and the store write itself (put), which is the baseline: the
 * rest is what Tokenkeeper adds on top of a bare write.
 *
 * Also measured, per refresh: the lease check made right before each token request
 * (lock.remainingMs(), one store round trip), against a plain store read (get) as its baseline.
 *
 *   npx tsx bench/save-window.ts        (SAVE_WINDOW_REFRESHES, default 40 per store)
 *
 * Redis and PostgreSQL are taken from TOKENKEEPER_TEST_REDIS_URL / TOKENKEEPER_TEST_POSTGRES_URL
 * (default: local servers); a store that is not reachable is skipped with a note.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { TokenManager } from "../src/manager/token-manager.js";
import type { FetchLike } from "../src/oauth/http.js";
import { FileStore } from "../src/store/file-store.js";
import { PostgresStore } from "../src/store/postgres-store.js";
import { RedisStore } from "../src/store/redis-store.js";
import { generateKey, Keyring } from "../src/store/sealing.js";
import type { Store } from "../src/store/types.js";
import { startTestBed } from "../test/bed/index.js";
import { percentile } from "../test/fleet/fleet-workers.js";
import { connectTestBed } from "../test/support/connect.js";
import {
  dropPostgresSchema,
  dropRedisPrefix,
  POSTGRES_URL,
  postgresAvailable,
  REDIS_URL,
  redisAvailable,
  uniqueSuffix,
  withParams,
} from "../test/support/services.js";

const REFRESHES = Number(process.env.SAVE_WINDOW_REFRESHES ?? 40);
const keyring = new Keyring(generateKey());

interface Target {
  label: string;
  store: Store;
  cleanup(): Promise<void>;
}

interface Sample {
  /** Answer (headers) → put resolved. */
  window: number;
  /** Answer → put called. */
  before: number;
  /** The put alone. */
  put: number;
}

const stats = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs) });
const ms = (x: number) => x.toFixed(1).padStart(6);

async function targets(): Promise<Target[]> {
  const out: Target[] = [];
  const dir = await mkdtemp(join(tmpdir(), "tk-save-window-"));
  out.push({
    label: "file",
    store: new FileStore({ dir }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  });
  if (await redisAvailable()) {
    const prefix = `tokenkeeper-bench:${uniqueSuffix()}:`;
    out.push({
      label: "redis",
      store: new RedisStore({ url: withParams(REDIS_URL, { prefix }), keyring }),
      cleanup: () => dropRedisPrefix(prefix),
    });
  } else console.log("redis: not reachable, skipped");
  if (await postgresAvailable()) {
    const schema = `tk_bench_${uniqueSuffix()}`;
    const store = new PostgresStore({ url: withParams(POSTGRES_URL, { schema }), keyring });
    await store.migrate();
    out.push({ label: "postgres", store, cleanup: () => dropPostgresSchema(schema) });
  } else console.log("postgres: not reachable, skipped");
  return out;
}

async function measure(
  target: Target,
): Promise<{ samples: Sample[]; check: number[]; get: number[]; rejected: number }> {
  const bed = await startTestBed({ accessTokenTtl: 3600 });
  try {
    await connectTestBed(bed, target.store, "window");
    let answeredAt = 0;
    let putCalledAt = 0;
    const samples: Sample[] = [];
    // The store as the manager sees it: every call passes through, the refresh's put is timed.
    const timed: Store = {
      location: target.store.location,
      get: (n) => target.store.get(n),
      list: () => target.store.list(),
      delete: (n, v) => target.store.delete(n, v),
      lock: (n, o) => target.store.lock(n, o),
      close: async () => {},
      put: async (n, r, v) => {
        putCalledAt = performance.now();
        const version = await target.store.put(n, r, v);
        const savedAt = performance.now();
        if (answeredAt > 0) {
          samples.push({
            window: savedAt - answeredAt,
            before: putCalledAt - answeredAt,
            put: savedAt - putCalledAt,
          });
          answeredAt = 0;
        }
        return version;
      },
    };
    const fetch: FetchLike = async (input, init) => {
      const response = await globalThis.fetch(input, init);
      answeredAt = performance.now();
      return response;
    };
    const manager = new TokenManager({ store: timed, fetch });
    for (let i = 0; i < REFRESHES; i++) await manager.refreshNow("window");
    await manager.close();

    // The lease check against a plain read, on the same store and connector.
    const check: number[] = [];
    const get: number[] = [];
    for (let i = 0; i < REFRESHES; i++) {
      const lock = await target.store.lock("window", { leaseMs: 30_000, waitMs: 5_000 });
      let t0 = performance.now();
      await lock.remainingMs();
      check.push(performance.now() - t0);
      t0 = performance.now();
      await target.store.get("window");
      get.push(performance.now() - t0);
      await lock.release();
    }
    return { samples, check, get, rejected: bed.as.counters.rejectedRefreshTokens };
  } finally {
    await bed.close();
  }
}

console.log(
  `${REFRESHES} rotating refreshes per store, ${availableParallelism()} CPUs; times in ms (p50 / p99 / max)`,
);
console.log(
  "| store    | answer → durable (window) | answer → put called | put alone (baseline) | lease check | get (baseline) | rejected |",
);
console.log(
  "|:---------|--------------------------:|--------------------:|---------------------:|------------:|---------------:|---------:|",
);
for (const target of await targets()) {
  try {
    const { samples, check, get, rejected } = await measure(target);
    const w = stats(samples.map((s) => s.window));
    const b = stats(samples.map((s) => s.before));
    const p = stats(samples.map((s) => s.put));
    const c = stats(check);
    const g = stats(get);
    console.log(
      `| ${target.label.padEnd(8)} | ${ms(w.p50)} / ${ms(w.p99)} / ${ms(w.max)} | ${ms(b.p50)} / ${ms(b.max)} | ${ms(p.p50)} / ${ms(p.p99)} | ${ms(c.p50)} / ${ms(c.p99)} | ${ms(g.p50)} / ${ms(g.p99)} | ${rejected} |`,
    );
  } finally {
    await target.store.close();
    await target.cleanup();
  }
}
