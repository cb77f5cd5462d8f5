import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ManualClock } from "../../src/core/clock.js";
import { LockTimeoutError } from "../../src/core/errors.js";
import { judgeHolder, type LockHolder, removeHolderFile } from "../../src/store/file-lock.js";
import { FileStore } from "../../src/store/file-store.js";
import type { StoreLock } from "../../src/store/types.js";
import { spawnChild } from "./fixtures/children.js";

async function stateDir(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "tokenkeeper-lock-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  return join(root, "state");
}

/** A pid that certainly belonged to a process that has exited (and was reaped). */
function deadPid(): number {
  const pid = spawnSync(process.execPath, ["-e", ""]).pid;
  assert.ok(pid);
  return pid;
}

/** Plants a lock as another process would have left it. */
async function plantLock(dir: string, name: string, holder: Partial<LockHolder>): Promise<void> {
  const token = "ab".repeat(16);
  const lockDir = join(dir, "locks", `${name}.lock`);
  await new FileStore({ dir }).list(); // the store makes its own private directories
  await mkdir(lockDir);
  const full = {
    pid: 1,
    hostname: hostname(),
    token,
    acquiredAt: 0,
    expiresAt: Date.now() + 60_000,
    ...holder,
  };
  await writeFile(join(lockDir, `${token}.json`), JSON.stringify(full), { mode: 0o600 });
}

describe("judgeHolder (pure)", () => {
  const self = { hostname: "here", pid: 100, owns: (token: string) => token === "mine" };
  const holder = (h: Partial<LockHolder>): LockHolder => ({
    pid: 200,
    hostname: "here",
    token: "t",
    acquiredAt: 0,
    expiresAt: 1_000,
    ...h,
  });
  const alive = () => true;
  const dead = () => false;

  it("keeps a live holder within its lease", () => {
    assert.equal(judgeHolder(holder({}), 999, self, alive), "live");
  });
  it("drops a holder whose lease ran out, alive or not", () => {
    assert.equal(judgeHolder(holder({}), 1_000, self, alive), "expired");
  });
  it("drops a dead process on this host before its lease ends", () => {
    assert.equal(judgeHolder(holder({}), 10, self, dead), "dead");
  });
  it("never judges a pid on another host", () => {
    assert.equal(judgeHolder(holder({ hostname: "elsewhere" }), 10, self, dead), "live");
  });
  it("knows its own locks: our pid with a token we never issued is an earlier process (container restart)", () => {
    assert.equal(judgeHolder(holder({ pid: 100, token: "mine" }), 10, self, dead), "live");
    assert.equal(judgeHolder(holder({ pid: 100, token: "someone-before-us" }), 10, self, alive), "dead");
  });
  it("treats an unreadable lock as stale", () => {
    assert.equal(judgeHolder(null, 10, self, alive), "unreadable");
  });
});

describe("FileStore refresh lock", () => {
  it("writes a private lock file describing its holder", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    const lock = await store.lock("desc", { leaseMs: 5_000, waitMs: 0 });
    const lockDir = join(dir, "locks", "desc.lock");
    const [file, ...others] = await readdir(lockDir);
    assert.deepEqual(others, []);
    const holder = JSON.parse(await readFile(join(lockDir, file!), "utf8"));
    assert.equal(holder.pid, process.pid);
    assert.equal(holder.hostname, hostname());
    assert.equal(`${holder.token}.json`, file);
    assert.equal(holder.expiresAt, lock.expiresAt);
    assert.equal(holder.expiresAt - holder.acquiredAt, 5_000);
    assert.equal((await stat(join(lockDir, file!))).mode & 0o777, 0o600);
    await lock.release();
    assert.deepEqual(await readdir(join(dir, "locks")), [], "release leaves nothing behind");
  });

  it("times out with LockTimeoutError naming the connector and the holder pid", async (t) => {
    const dir = await stateDir(t);
    const holder = await new FileStore({ dir }).lock("busy", { leaseMs: 5_000, waitMs: 0 });
    const started = Date.now();
    await assert.rejects(
      new FileStore({ dir }).lock("busy", { leaseMs: 5_000, waitMs: 150 }),
      (e: unknown) => {
        assert.ok(e instanceof LockTimeoutError);
        assert.equal(e.code, "lock_timeout");
        assert.equal(e.connector, "busy");
        assert.equal(e.fields.holderPid, process.pid);
        assert.equal(e.fields.holderHost, hostname());
        return true;
      },
    );
    const waited = Date.now() - started;
    assert.ok(waited >= 140 && waited < 1_000, `waited ${waited} ms for a 150 ms bound`);
    await holder.release();
  });

  it("stops waiting when aborted, and leaves no staging directory behind", async (t) => {
    const dir = await stateDir(t);
    const holder = await new FileStore({ dir }).lock("abort", { leaseMs: 5_000, waitMs: 0 });
    const controller = new AbortController();
    const waiting = new FileStore({ dir }).lock("abort", {
      leaseMs: 5_000,
      waitMs: 5_000,
      signal: controller.signal,
    });
    await sleep(30);
    controller.abort(new Error("shutting down"));
    await assert.rejects(waiting, /shutting down/);
    assert.deepEqual(await readdir(join(dir, "locks")), ["abort.lock"]);
    await holder.release();
  });

  it("treats an empty lock directory (holder died mid-release) and an unreadable one as free", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    await store.list();
    await mkdir(join(dir, "locks", "empty.lock"));
    await (await store.lock("empty", { leaseMs: 1_000, waitMs: 0 })).release();
    await mkdir(join(dir, "locks", "garbled.lock"));
    await writeFile(join(dir, "locks", "garbled.lock", `${"cd".repeat(16)}.json`), "{", { mode: 0o600 });
    const lock = await store.lock("garbled", { leaseMs: 1_000, waitMs: 0 });
    assert.ok(lock.held());
    await lock.release();
  });

  it("a lease that ran out by the injected clock passes the lock on; the old holder's release is a no-op", async (t) => {
    const dir = await stateDir(t);
    const clock = new ManualClock();
    const a = new FileStore({ dir, clock });
    const b = new FileStore({ dir, clock });
    const first = await a.lock("lease", { leaseMs: 60_000, waitMs: 0 });

    // An object, not a `let`: TypeScript cannot see the callback assign it, and would narrow it to undefined.
    const got: { lock?: StoreLock } = {};
    const waiting = b.lock("lease", { leaseMs: 60_000, waitMs: 120_000 }).then((l) => {
      got.lock = l;
    });
    // Same process, so the holder's pid is alive: only the lease can free the lock.
    for (let i = 0; i < 100 && clock.pendingSleeps === 0; i++) await sleep(2);
    await clock.advance(59_000);
    await sleep(20);
    assert.equal(got.lock, undefined, "not before the lease ends");
    assert.ok(first.held());
    for (let i = 0; i < 200 && !got.lock; i++) {
      await clock.advance(100);
      await sleep(2);
    }
    await waiting;
    const second = got.lock!;
    assert.ok(second.held());
    assert.equal(first.held(), false);

    await first.release();
    assert.ok(second.held(), "a late release does not free the new holder's lock");
    await assert.rejects(a.lock("lease", { leaseMs: 1_000, waitMs: 0 }), LockTimeoutError);
    await second.release();
  });

  it("a waiter that judged a holder stale late cannot remove the lock someone took over meanwhile", async (t) => {
    // The interleaving that breaks pid-file locks: waiters W1 and W2 both see holder H dead; W1
    // removes H's lock and takes the lock; only then does W2 act on what it saw.
    const dir = await stateDir(t);
    await plantLock(dir, "late", { pid: deadPid() });
    const lockDir = join(dir, "locks", "late.lock");
    const [staleFile] = await readdir(lockDir);
    const w1 = await new FileStore({ dir }).lock("late", { leaseMs: 10_000, waitMs: 0 });
    assert.equal(
      await removeHolderFile(lockDir, staleFile!),
      false,
      "W2's take-over finds nothing to remove",
    );
    assert.ok(w1.held(), "W1 still holds the lock");
    await assert.rejects(
      new FileStore({ dir }).lock("late", { leaseMs: 10_000, waitMs: 0 }),
      LockTimeoutError,
    );
    await w1.release();
  });

  it("takes over at once a lock left by an earlier process that had our pid", async (t) => {
    const dir = await stateDir(t);
    await plantLock(dir, "reborn", { pid: process.pid, expiresAt: Date.now() + 60_000 });
    const lock = await new FileStore({ dir }).lock("reborn", { leaseMs: 5_000, waitMs: 0 });
    assert.ok(lock.held());
    await lock.release();
  });

  it("several waiters taking over one stale lock get it one at a time", async (t) => {
    const dir = await stateDir(t);
    await plantLock(dir, "stampede", { pid: deadPid() });
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const lock = await new FileStore({ dir }).lock("stampede", { leaseMs: 10_000, waitMs: 5_000 });
        inside++;
        most = Math.max(most, inside);
        order.push(i);
        await sleep(5);
        inside--;
        await lock.release();
      }),
    );
    assert.equal(most, 1, "never two holders at once");
    assert.equal(order.length, 8);
  });
});

describe("FileStore refresh lock across processes", () => {
  it("a holder killed with SIGKILL is replaced quickly, long before its 60 s lease", async (t) => {
    const dir = await stateDir(t);
    await new FileStore({ dir }).list(); // creates the directories before the child races us
    const child = spawnChild(["hold-lock", dir, "killed", "60000"]);
    t.after(() => child.kill());
    const { locked } = JSON.parse(await child.nextLine());
    assert.equal(locked, child.pid);

    const store = new FileStore({ dir });
    const waiting = store.lock("killed", { leaseMs: 5_000, waitMs: 5_000 });
    await sleep(300); // the waiter is polling, backed off to its cap
    const killedAt = performance.now();
    await child.kill();
    const lock = await waiting;
    const recoveredMs = performance.now() - killedAt;
    t.diagnostic(`lock recovered ${recoveredMs.toFixed(1)} ms after SIGKILL of the holder`);
    assert.ok(recoveredMs < 1_000, `recovered in ${recoveredMs} ms`);
    assert.ok(lock.held());
    await lock.release();

    // A process that starts after the holder died takes the lock at once.
    await plantLock(dir, "killed", { pid: child.pid, expiresAt: Date.now() + 60_000 });
    const started = performance.now();
    const again = await store.lock("killed", { leaseMs: 5_000, waitMs: 0 });
    t.diagnostic(
      `lock of a dead holder taken in ${(performance.now() - started).toFixed(1)} ms without waiting`,
    );
    await again.release();
  });

  it("a live holder whose lease ran out loses the lock to a waiter", async (t) => {
    const dir = await stateDir(t);
    await new FileStore({ dir }).list();
    const child = spawnChild(["hold-lock", dir, "slow", "400"]);
    t.after(() => child.kill());
    const { expiresAt } = JSON.parse(await child.nextLine());
    const lock = await new FileStore({ dir }).lock("slow", { leaseMs: 5_000, waitMs: 5_000 });
    const late = Date.now() - expiresAt;
    assert.ok(late >= 0, "not before the lease ends");
    assert.ok(late < 1_000, `taken ${late} ms after the lease ended`);
    assert.equal(child.proc.exitCode, null, "the holder is still alive");
    await lock.release();
  });

  it("gives mutual exclusion to 5 processes incrementing one counter", async (t) => {
    const dir = await stateDir(t);
    await new FileStore({ dir }).list();
    const counter = join(dir, "..", "counter");
    await writeFile(counter, "0");
    const children = Array.from({ length: 5 }, () => spawnChild(["count", dir, "counter", counter]));
    t.after(() => Promise.all(children.map((c) => c.kill())));
    for (const c of children) assert.equal(await c.nextLine(), "done");
    assert.equal(await readFile(counter, "utf8"), "5", "no lost update: never two holders at once");
  });
});
