/**
 * A fleet of race-worker processes (test/manager/fixtures/race-worker.ts) started in gated mode:
 * they start (slowly, a TypeScript process each), open their store and wait; the caller seeds a
 * short-lived token and releases them at once, so every worker sees the same first expiry.
 * Used by the fleet race tests and by bench/fleet.ts.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import type { AuthCounters } from "../bed/index.js";
import { nodeArgsFor } from "../support/child-entry.js";
import { recordOutput } from "../support/secret-scan.js";

const WORKER = fileURLToPath(new URL("../manager/fixtures/race-worker.ts", import.meta.url));

export interface WorkerSpec {
  storeUrl: string;
  /** The worker's whole environment (pass TOKENKEEPER_KEY here for a sealing store). */
  env: NodeJS.ProcessEnv;
}

/** One line of a worker's output: one expiry, seen by one caller. */
export interface RoundResult {
  round: number;
  fingerprint: string;
  expiresAt: number;
  /** When the worker asked (epoch ms): right after the expiry, unless it woke late. */
  askedAt: number;
  /** How long getAccessToken took, from the call right after expiry to its return. */
  latencyMs: number;
  /** Whether this worker's manager made the refresh grant. */
  refreshed: boolean;
  /** When that grant was answered (epoch ms), if it did. */
  refreshedAt?: number;
}

export interface Fleet {
  /**
   * Releases every worker. `expiresAt`, the seeded token's expiry, is the first expiry they
   * race at; without it each worker reads it from the store.
   */
  go(expiresAt?: number): void;
  /** Each worker's rounds, in spawn order; rejects when a worker fails or times out. */
  finished: Promise<RoundResult[][]>;
  /** Kills whatever is still running (after a failure). */
  kill(): void;
}

/**
 * Spawns the workers and resolves once every one of them is ready (opened its store). Each
 * worker is bounded by `timeoutMs` (default 90 s) from spawn; a worker that fails kills the rest.
 */
export async function startFleet(
  specs: readonly WorkerSpec[],
  connector: string,
  rounds: number,
  timeoutMs = 90_000,
): Promise<Fleet> {
  const children: ChildProcess[] = [];
  const kill = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  };
  const readies: Promise<void>[] = [];
  const outputs: Promise<RoundResult[]>[] = [];
  for (const spec of specs) {
    const child = spawn(
      process.execPath,
      [...nodeArgsFor(WORKER), spec.storeUrl, connector, String(rounds), "gated"],
      {
        stdio: ["pipe", "pipe", "pipe"],
        env: spec.env,
      },
    );
    children.push(child);
    let out = "";
    let err = "";
    let markReady: () => void = () => {};
    let failReady: (e: Error) => void = () => {};
    readies.push(
      new Promise<void>((resolve, reject) => {
        markReady = resolve;
        failReady = reject;
      }),
    );
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes('{"ready":true}\n')) markReady();
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    outputs.push(
      new Promise<RoundResult[]>((resolve, reject) => {
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        child.on("exit", (code, signal) => {
          clearTimeout(timer);
          recordOutput("race worker stdout", out);
          recordOutput("race worker stderr", err);
          if (code === 0) {
            const lines = out.trim().split("\n").slice(1);
            resolve(lines.map((line) => JSON.parse(line) as RoundResult));
            return;
          }
          const why = new Error(`race worker exited ${code ?? signal}: ${err.slice(0, 2000)}`);
          failReady(why);
          reject(why);
        });
      }),
    );
  }
  const finished = Promise.all(outputs);
  finished.catch(kill);
  try {
    await Promise.all(readies);
  } catch (e) {
    kill();
    await finished.catch(() => {});
    throw e;
  }
  return {
    go(expiresAt?: number) {
      const line = expiresAt === undefined ? "go" : JSON.stringify({ expiresAt });
      for (const c of children) c.stdin!.end(`${line}\n`);
    },
    finished,
    kill,
  };
}

/** Summary of latencies (ms): sorted nearest-rank percentiles. */
/**
 * The verdict on a race, from the authorization server's own counters and what each worker saw.
 * On a loaded machine a worker can wake, or get the lock, only after the round's new token has
 * itself (nearly) expired: it must refresh then, and that extra grant is right, not a race. The
 * verdict tells the two apart: the server's reuse and rejection counters stay at 0 in every
 * case, every grant is one a worker reports, each token comes from exactly one grant, and every
 * grant was answered only once the token it replaced was inside its expiry margin (a second grant
 * for the same expiry is answered while the first one's token is still fresh). With no extra
 * grant, each round is one expiry: one refresher, one token for everybody.
 */
export function assertRaceVerdict(
  t: TestContext,
  race: {
    counters: AuthCounters;
    outputs: RoundResult[][];
    rounds: number;
    /** The expiry of the token seeded before the workers were released. */
    seededExpiresAt: number;
    /** The manager's expiry margin for the bed's tokens. */
    marginMs: number;
    /** The store's rotation count for the connector once the race is over. */
    rotationCount: number | undefined;
  },
): void {
  const { counters: c, outputs, rounds } = race;
  // On failure, what each worker saw: per round, the token's end, who refreshed, when it asked
  // and how long it took.
  const seen = outputs
    .map(
      (lines, i) =>
        `worker ${i}: ${lines.map((r) => `${r.round}:${r.fingerprint.slice(-4)}@${r.expiresAt}${r.refreshed ? "*" : ""} asked ${r.askedAt}+${Math.round(r.latencyMs)}ms`).join(" ")}`,
    )
    .join("\n");
  assert.equal(
    c.rejectedRefreshTokens,
    0,
    `no refresh token rejected (${c.rejectedRefreshReasons.join(", ")})`,
  );
  assert.equal(c.refreshTokenReuse, 0, "no refresh token reused");
  const refreshes = outputs.flat().filter((l) => l.refreshed);
  assert.equal(c.grants.refresh_token, refreshes.length, `grants the workers made\n${seen}`);
  const issued = new Set(refreshes.map((l) => l.fingerprint));
  assert.equal(issued.size, refreshes.length, `one grant per token\n${seen}`);
  for (const line of outputs.flat())
    assert.ok(issued.has(line.fingerprint), `a worker got a token no grant of the race issued\n${seen}`);
  let replaced = race.seededExpiresAt;
  for (const grant of [...refreshes].sort((a, b) => a.expiresAt - b.expiresAt)) {
    assert.ok(
      grant.refreshedAt! >= replaced - race.marginMs,
      `a grant answered at ${grant.refreshedAt} replaced a token good until ${replaced}: a double refresh\n${seen}`,
    );
    replaced = grant.expiresAt;
  }
  assert.ok(c.grants.refresh_token >= rounds, `at least one grant per expiry\n${seen}`);
  assert.equal(race.rotationCount, c.grants.refresh_token, "every rotation is in the store");
  if (c.grants.refresh_token > rounds) {
    t.diagnostic(
      `${c.grants.refresh_token - rounds} extra grant(s), each due: a worker asked late on a loaded machine\n${seen}`,
    );
    return;
  }
  for (let round = 1; round <= rounds; round++) {
    const lines = outputs.map((r) => r[round - 1]!);
    assert.equal(
      new Set(lines.map((l) => l.fingerprint)).size,
      1,
      `every worker got the same token in round ${round}`,
    );
    assert.equal(
      lines.filter((l) => l.refreshed).length,
      1,
      `exactly one worker refreshed in round ${round}`,
    );
  }
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/**
 * Two URLs for the same server that a driver treats as different endpoints: the same address
 * by `127.0.0.1` and by `localhost`, so two groups of workers use two independent clients.
 * Any other host is returned twice.
 */
export function twoWaysTo(url: string): [string, string] {
  const u = new URL(url);
  if (u.hostname !== "127.0.0.1" && u.hostname !== "localhost") return [url, url];
  const a = new URL(url);
  a.hostname = "127.0.0.1";
  const b = new URL(url);
  b.hostname = "localhost";
  return [a.href, b.href];
}
