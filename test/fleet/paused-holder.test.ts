/**
 * A refresher paused while it holds the refresh lock, right before its token request leaves
 * (a real SIGSTOP of a separate process), until its lease has run out and another process has
 * refreshed. When it resumes it must not send the refresh token it read: the other process has
 * spent it, and the authorization server (rotation on every use, reuse revokes the grant)
 * would revoke the whole grant. The store's version fences the paused process's *write*; only
 * the lease check right before sending fences its *request*. The verdict is the server's own
 * counters, on each of the three stores a fleet can share.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { StoreUnavailableError } from "../../src/core/errors.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { FileStore } from "../../src/store/file-store.js";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { spawnChild, spawnScript } from "../store/fixtures/children.js";
import { connectTestBed } from "../support/connect.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { requirePostgres, requireRedis, withScratchStore } from "../support/services.js";
import { waitFor } from "../support/wait-for.js";

const WORKER = fileURLToPath(new URL("../manager/fixtures/paused-refresher.ts", import.meta.url));
const CONNECTOR = "paused";
/** The paused worker's lease: short, so the test waits little for it to run out. */
const LEASE_MS = 2_000;
/** Generous bounds: a TypeScript process starting on a loaded 2-core machine can take seconds. */
const START_MS = 60_000;
const STEP_MS = 30_000;

/** Whether `pid` is stopped (state T), by /proc where there is one, else by ps. */
async function isStopped(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state follows the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  } catch {
    const { execFileSync } = await import("node:child_process");
    return execFileSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" })
      .trim()
      .startsWith("T");
  }
}

describe("a refresher paused past its lease right before its request leaves", () => {
  let bed: TestBed;
  const key = generateKey();
  const keyring = new Keyring(key);
  const workerEnv: NodeJS.ProcessEnv = { ...process.env, TOKENKEEPER_KEY: key.export().reveal() };
  delete workerEnv.TOKENKEEPER_KEY_FILE;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3600 });
  });
  after(async () => {
    await bed.close();
  });

  async function pauseAndResume(t: TestContext, storeUrl: string, seed: Store): Promise<void> {
    await connectTestBed(bed, seed, CONNECTOR);
    bed.as.resetCounters();
    const worker = spawnScript(WORKER, [storeUrl, CONNECTOR, String(LEASE_MS)], workerEnv);
    try {
      // 1. The worker holds the lock and is about to send: stop it there, for real.
      const { stopMe } = JSON.parse(await worker.nextLine(START_MS)) as { stopMe: number };
      assert.equal(stopMe, worker.pid);
      const pausedAt = Date.now();
      process.kill(worker.pid, "SIGSTOP");
      await waitFor(() => isStopped(worker.pid), STEP_MS, "the worker to stop");
      // Read only once it runs again: whatever it does next, it does after the pause.
      worker.send("continue");

      // 2. Another process refreshes: this one, through its own client of the store. It waits
      //    out the paused worker's lease, then rotates the refresh token.
      const other = new TokenManager({ store: seed, lock: { waitMs: STEP_MS } });
      const fresh = await other.refreshNow(CONNECTOR);
      await other.close();
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 1, "the other process refreshed");
      assert.ok(await isStopped(worker.pid), "the worker stayed stopped throughout");

      // 3. The worker resumes, holding a refresh token that is now spent.
      process.kill(worker.pid, "SIGCONT");
      const result = JSON.parse(await worker.nextLine(STEP_MS)) as {
        done: boolean;
        paused: boolean;
        refreshed: boolean;
        fingerprint: string;
      };
      assert.equal((await worker.exited).code, 0);
      assert.ok(result.done && result.paused);

      const c = bed.as.counters;
      assert.equal(c.refreshTokenReuse, 0, "the resumed worker did not present the spent refresh token");
      assert.equal(
        c.rejectedRefreshTokens,
        0,
        `no refresh token rejected (${c.rejectedRefreshReasons.join(", ")})`,
      );
      assert.equal(c.grants.refresh_token, 1, "only the other process made a refresh grant");
      assert.equal(result.refreshed, false);
      assert.equal(result.fingerprint, fresh.token.reveal().slice(-12), "the worker ends with the new token");
      const stored = (await seed.get(CONNECTOR))!.record;
      assert.ok(stored.tokens!.accessToken.equals(fresh.token), "the store holds the new token");

      // 4. The grant is alive: the MCP server takes the new token, and the stored refresh token
      //    refreshes once more.
      assert.ok(await mcpAccepts(bed.mcpUrl, fresh.token.reveal()), "the MCP server accepts the new token");
      const check = new TokenManager({ store: seed });
      await check.refreshNow(CONNECTOR);
      await check.close();
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 2, "the grant still refreshes");
      assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
      t.diagnostic(`paused for ${Date.now() - pausedAt} ms in total; lease ${LEASE_MS} ms`);
    } finally {
      await worker.kill();
    }
  }

  it("file store: the resumed holder sends nothing, takes the new token, and the grant lives", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "tokenkeeper-paused-"));
    const dir = join(root, "state");
    const seed = new FileStore({ dir });
    try {
      await pauseAndResume(t, pathToFileURL(dir).href, seed);
    } finally {
      await seed.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it("file store: no refresh is sent while a stalled process holds the connector's write lock", async () => {
    const root = await mkdtemp(join(tmpdir(), "tokenkeeper-stalled-write-"));
    const dir = join(root, "state");
    // The failure is recorded in the store too, which waits for the stalled writer: briefly.
    const store = new FileStore({ dir, writeWaitMs: 1_000 });
    // A process stalls in the middle of a write to the connector, holding its write lock: a
    // refresh now would rotate the refresh token into a result that cannot be saved.
    await connectTestBed(bed, store, CONNECTOR);
    bed.as.resetCounters();
    const writer = spawnChild(["hang-before-rename", dir, CONNECTOR, "1", "stalled-write"]);
    try {
      assert.equal(await writer.nextLine(START_MS), "ready");
      const manager = new TokenManager({ store, retry: { deadlineMs: 3_000 } });
      const failure = await manager.refreshNow(CONNECTOR).catch((e: unknown) => e);
      await manager.close();
      assert.ok(failure instanceof StoreUnavailableError, String(failure));
      assert.equal(bed.as.counters.tokenRequests, 0, "no token request was sent");

      // Once the writer is gone (its lock is a dead process's), the refresh goes through.
      await writer.kill();
      const again = new TokenManager({ store });
      await again.refreshNow(CONNECTOR);
      await again.close();
      assert.equal(bed.as.counters.refreshGrantsSucceeded, 1);
      assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    } finally {
      await writer.kill();
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it("Redis: the resumed holder sends nothing, takes the new token, and the grant lives", async (t) => {
    if (!(await requireRedis(t))) return;
    await withScratchStore("redis", keyring, (url, seed) => pauseAndResume(t, url, seed));
  });

  it("PostgreSQL: the resumed holder sends nothing, takes the new token, and the grant lives", async (t) => {
    if (!(await requirePostgres(t))) return;
    await withScratchStore("postgres", keyring, (url, seed) => pauseAndResume(t, url, seed));
  });
});
