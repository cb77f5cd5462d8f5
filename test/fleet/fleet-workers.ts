/**
 * A fleet of race-worker processes (test/manager/fixtures/race-worker.ts) started in gated mode:
 * they start (slowly, a TypeScript process each), open their store and wait; the caller seeds a
 * short-lived token and releases them at once, so every worker sees the same first expiry.
 * Used by the fleet race tests and by bench/fleet.ts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
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
      ["--import", "tsx", WORKER, spec.storeUrl, connector, String(rounds), "gated"],
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
