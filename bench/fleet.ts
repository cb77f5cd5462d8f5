/**
 * Fleet benchmark, for each store (file, Redis, PostgreSQL):
 *   - hot path: getAccessToken() calls per second with a fresh token (benchHotPath);
 *   - refresh under contention: 16 worker processes share the store and all wake right after
 *     each of several expiries. Latency is the caller's view: from the getAccessToken() call
 *     made at expiry to its return, whether the caller refreshed or waited for the one that did.
 *     The baseline, in the same run, is one caller refreshing alone (refreshNow) on that store.
 * The authorization server's counters confirm one refresh grant per expiry and no rejection.
 *
 *   npx tsx bench/fleet.ts
 *
 * Knobs (environment): FLEET_WORKERS (16), FLEET_EXPIRIES (4), FLEET_TTL_S (2, the access
 * token lifetime), and hot-path's own `--calls N`. Redis and PostgreSQL are taken from
 * TOKENKEEPER_TEST_REDIS_URL / TOKENKEEPER_TEST_POSTGRES_URL (default: local servers); a store
 * that is not reachable is skipped with a note.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { TokenManager } from "../src/manager/token-manager.js";
import { FileStore } from "../src/store/file-store.js";
import { PostgresStore } from "../src/store/postgres-store.js";
import { RedisStore } from "../src/store/redis-store.js";
import { generateKey, Keyring } from "../src/store/sealing.js";
import type { Store } from "../src/store/types.js";
import { startTestBed, type TestBed } from "../test/bed/index.js";
import { percentile, type RoundResult, startFleet, twoWaysTo } from "../test/fleet/fleet-workers.js";
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
import { benchHotPath } from "./hot-path.js";

const WORKERS = Number(process.env.FLEET_WORKERS ?? 16);
const EXPIRIES = Number(process.env.FLEET_EXPIRIES ?? 4);
const TTL_S = Number(process.env.FLEET_TTL_S ?? 2);
const SOLO_REFRESHES = 10;

interface Target {
  label: string;
  /** Opens a store client on the shared data (each call: a new, independent client). */
  open(): Store;
  /** Worker URLs: two spellings of the same address, for two independent sets of clients. */
  urls: [string, string];
  cleanup(): Promise<void>;
}

interface Row {
  store: string;
  hotPath: number;
  solo: { p50: number; p99: number };
  fleet: { p50: number; p99: number; max: number; refresher: number };
  grants: number;
  rejected: number;
}

const key = generateKey();
const keyring = new Keyring(key);
const workerEnv: NodeJS.ProcessEnv = { ...process.env, TOKENKEEPER_KEY: key.export().reveal() };
delete workerEnv.TOKENKEEPER_KEY_FILE;

async function fileTarget(): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), "tk-fleet-bench-"));
  const url = pathToFileURL(dir).href;
  return {
    label: "file",
    open: () => new FileStore({ dir }),
    urls: [url, url],
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

function redisTarget(): Target {
  const prefix = `tokenkeeper-bench:${uniqueSuffix()}:`;
  const urls = twoWaysTo(withParams(REDIS_URL, { prefix })) as [string, string];
  return {
    label: "redis",
    open: () => new RedisStore({ url: urls[0], keyring }),
    urls,
    cleanup: () => dropRedisPrefix(prefix),
  };
}

async function postgresTarget(): Promise<Target> {
  const schema = `tk_bench_${uniqueSuffix()}`;
  const urls = twoWaysTo(withParams(POSTGRES_URL, { schema })) as [string, string];
  const admin = new PostgresStore({ url: urls[0], keyring });
  await admin.migrate();
  await admin.close();
  return {
    label: "postgres",
    open: () => new PostgresStore({ url: urls[0], keyring }),
    urls,
    cleanup: () => dropPostgresSchema(schema),
  };
}

async function measure(target: Target, hotBed: TestBed, raceBed: TestBed): Promise<Row> {
  // Hot path: a fresh token served from memory.
  const hotStore = target.open();
  await connectTestBed(hotBed, hotStore, "bench");
  const hot = await benchHotPath(hotStore, `${target.label} store`);
  await hotStore.close();

  // Contention: every worker wakes at each expiry; one refreshes, the others wait for it.
  const specs = Array.from({ length: WORKERS }, (_, i) => ({
    storeUrl: target.urls[i % 2]!,
    env: workerEnv,
  }));
  const fleet = await startFleet(specs, "fleet", EXPIRIES);
  const seedStore = target.open();
  let outputs: RoundResult[][];
  try {
    const seeded = await connectTestBed(raceBed, seedStore, "fleet");
    raceBed.as.resetCounters();
    fleet.go(seeded.tokens!.expiresAt!);
    outputs = await fleet.finished;
  } finally {
    fleet.kill();
  }
  const counters = raceBed.as.counters;
  const grants = counters.grants.refresh_token;
  const rejected = counters.rejectedRefreshTokens;
  const calls = outputs.flat();
  const latencies = calls.map((c) => c.latencyMs);
  const refresher = calls.filter((c) => c.refreshed).map((c) => c.latencyMs);

  // Baseline: one caller, no contention, a refresh forced each time.
  const manager = new TokenManager({ store: seedStore });
  const solo: number[] = [];
  for (let i = 0; i < SOLO_REFRESHES; i++) {
    const started = performance.now();
    await manager.refreshNow("fleet");
    solo.push(performance.now() - started);
  }
  await manager.close();
  await seedStore.close();

  return {
    store: target.label,
    hotPath: hot.manager,
    solo: { p50: percentile(solo, 50), p99: percentile(solo, 99) },
    fleet: {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: Math.max(...latencies),
      refresher: percentile(refresher, 50),
    },
    grants,
    rejected,
  };
}

function printTable(rows: Row[]): void {
  const ms = (n: number) => n.toFixed(1);
  const header = [
    "store",
    "hot path calls/s",
    "solo refresh p50/p99 ms",
    `${WORKERS}-way p50 ms`,
    "p99 ms",
    "max ms",
    "refresher p50 ms",
    "refresh grants",
    "rejected",
  ];
  const lines = rows.map((r) => [
    r.store,
    Math.round(r.hotPath).toLocaleString("en-US"),
    `${ms(r.solo.p50)} / ${ms(r.solo.p99)}`,
    ms(r.fleet.p50),
    ms(r.fleet.p99),
    ms(r.fleet.max),
    ms(r.fleet.refresher),
    `${r.grants}/${EXPIRIES}`,
    String(r.rejected),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  console.log(row(header));
  console.log(
    `|${widths.map((w, i) => (i === 0 ? ":" : "-").padEnd(w + 1, "-") + (i === 0 ? "-" : ":")).join("|")}|`,
  );
  for (const l of lines) console.log(row(l));
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(
    `# fleet: ${WORKERS} processes, ${EXPIRIES} expiries of ${TTL_S} s tokens per store ` +
      `(Node ${process.version}, ${availableParallelism()} CPUs)`,
  );
  const hotBed = await startTestBed({ accessTokenTtl: 3600 });
  const raceBed = await startTestBed({ accessTokenTtl: TTL_S });
  const rows: Row[] = [];
  try {
    const targets: (() => Promise<Target>)[] = [fileTarget];
    if (await redisAvailable()) targets.push(async () => redisTarget());
    else console.log(`(skipping Redis: not reachable at ${new URL(REDIS_URL).host})`);
    if (await postgresAvailable()) targets.push(postgresTarget);
    else console.log(`(skipping PostgreSQL: not reachable at ${new URL(POSTGRES_URL).host})`);
    for (const make of targets) {
      const target = await make();
      try {
        rows.push(await measure(target, hotBed, raceBed));
      } finally {
        await target.cleanup();
      }
    }
  } finally {
    await Promise.all([hotBed.close(), raceBed.close()]);
  }
  console.log("");
  printTable(rows);
  console.log(
    `\nLatency is per caller, from the getAccessToken() call at expiry to its return (${WORKERS * EXPIRIES} calls per store);` +
      ` "refresher" is the one caller per expiry that made the grant. Done in ${((performance.now() - started) / 1000).toFixed(0)} s.`,
  );
  const wrong = rows.filter((r) => r.grants !== EXPIRIES || r.rejected !== 0);
  if (wrong.length > 0) {
    console.error(
      `UNEXPECTED: ${wrong.map((r) => r.store).join(", ")} did not make exactly one refresh per expiry`,
    );
    process.exitCode = 1;
  }
}

await main();
