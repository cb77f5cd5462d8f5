import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { type Clock, systemClock } from "../../src/core/clock.js";
import { serializeRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import { atomicWrite } from "../../src/store/atomic-write.js";
import { FileStore } from "../../src/store/file-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import { spawnChild } from "./fixtures/children.js";

async function stateDir(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "tokenkeeper-crash-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  return join(root, "state");
}

function withToken(name: string, accessToken: string) {
  return makeRecord(name, { tokens: makeTokens({ accessToken: new Secret(accessToken) }) });
}

/** The real clock, `aheadMs` in the future: "later", for the temp-file sweep. */
function later(aheadMs: number): Clock {
  return { now: () => systemClock.now() + aheadMs, sleep: systemClock.sleep };
}

function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid!;
}

const isTemp = (entry: string) => entry.startsWith(".") && entry.endsWith(".tmp");

describe("atomicWrite", () => {
  it("leaves the target untouched and no temp file when aborted before the rename", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "tokenkeeper-atomic-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const target = join(dir, "file.json");
    await atomicWrite(target, "old");
    await assert.rejects(
      atomicWrite(target, "new", {
        beforeRename: async () => {
          throw new Error("stop");
        },
      }),
      /stop/,
    );
    assert.equal(await readFile(target, "utf8"), "old");
    assert.deepEqual(await readdir(dir), ["file.json"]);
  });
});

describe("FileStore after a crash", () => {
  it("ignores a leftover partial temp file: get reads the previous token set, list skips it", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    await store.put("crashed", withToken("crashed", "previous-token"), null);
    const next = JSON.stringify({ version: 2, record: serializeRecord(withToken("crashed", "next-token")) });
    const leftover = `.crashed.json.${deadPid()}-0a1b2c3d4e5f.tmp`;
    await writeFile(join(dir, "connectors", leftover), next.slice(0, next.length / 3), { mode: 0o600 });

    const got = await store.get("crashed");
    assert.equal(got?.version, 1);
    assert.equal(got?.record.tokens?.accessToken.reveal(), "previous-token");
    assert.deepEqual(await store.list(), ["crashed"]);
    assert.equal(await store.put("crashed", withToken("crashed", "next-token"), 1), 2);

    // Swept only once old: still there now, gone when seen "two minutes later".
    assert.ok((await readdir(join(dir, "connectors"))).includes(leftover));
    await new FileStore({ dir, clock: later(120_000) }).list();
    assert.deepEqual(await readdir(join(dir, "connectors")), ["crashed.json"]);
  });

  it("never sweeps a temp file whose writer is still alive, however old", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    await store.list();
    const inFlight = `.busy.json.${process.pid}-00aa00aa00aa.tmp`;
    await writeFile(join(dir, "connectors", inFlight), "{", { mode: 0o600 });
    await new FileStore({ dir, clock: later(3_600_000) }).list();
    assert.ok((await readdir(join(dir, "connectors"))).includes(inFlight));
  });

  it("a writer SIGKILLed between fsync and rename: readers see the previous token set, never a broken one", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    await store.put("victim", withToken("victim", "previous-token"), null);

    const child = spawnChild(["hang-before-rename", dir, "victim", "1", "never-published"]);
    t.after(() => child.kill());
    assert.equal(await child.nextLine(), "ready");
    // The child's new file is complete and durable, under its temp name only.
    const temps = (await readdir(join(dir, "connectors"))).filter(isTemp);
    assert.equal(temps.length, 1);
    const pending = JSON.parse(await readFile(join(dir, "connectors", temps[0]!), "utf8"));
    assert.equal(pending.version, 2);
    assert.equal((await store.get("victim"))?.record.tokens?.accessToken.reveal(), "previous-token");

    await child.kill();

    const got = await store.get("victim");
    assert.equal(got?.version, 1);
    assert.equal(got?.record.tokens?.accessToken.reveal(), "previous-token");
    assert.deepEqual(await store.list(), ["victim"]);
    // The dead writer still "holds" the write mutex on disk; the next write notices its pid is gone.
    const started = performance.now();
    assert.equal(await store.put("victim", withToken("victim", "after-crash"), 1), 2);
    const tookMs = performance.now() - started;
    t.diagnostic(`put after a writer died holding the write mutex took ${tookMs.toFixed(1)} ms`);
    assert.ok(tookMs < 1_000);
    assert.equal((await store.get("victim"))?.record.tokens?.accessToken.reveal(), "after-crash");

    await new FileStore({ dir, clock: later(120_000) }).list();
    assert.deepEqual(
      (await readdir(join(dir, "connectors"))).filter(isTemp),
      [],
      "the dead writer's temp file is swept",
    );
    assert.deepEqual(await readdir(join(dir, "locks")), [], "nothing left in locks/");
  });

  it("a first write killed before its rename leaves no connector at all", async (t) => {
    const dir = await stateDir(t);
    const store = new FileStore({ dir });
    await store.list();
    const child = spawnChild(["hang-before-rename", dir, "newborn", "null", "never-published"]);
    t.after(() => child.kill());
    assert.equal(await child.nextLine(), "ready");
    await child.kill();
    assert.equal(await store.get("newborn"), null);
    assert.deepEqual(await store.list(), []);
    assert.equal(await store.put("newborn", makeRecord("newborn"), null), 1);
  });

  it("readers racing a stream of writes only ever see complete versions", async (t) => {
    const dir = await stateDir(t);
    const writer = new FileStore({ dir });
    const reader = new FileStore({ dir });
    // Large enough that a torn write would be visible.
    const big = (i: number) => withToken("stream", `token-${i}-${"x".repeat(64 * 1024)}`);
    await writer.put("stream", big(1), null);
    let done = false;
    const writes = (async () => {
      for (let v = 1; v < 30; v++) await writer.put("stream", big(v + 1), v);
      done = true;
    })();
    let reads = 0;
    let last = 0;
    while (!done) {
      const got = await reader.get("stream");
      assert.ok(got);
      assert.ok(got.version >= last, "versions never go back");
      assert.ok(
        got.record.tokens?.accessToken.reveal().startsWith(`token-${got.version}-`),
        "version and content agree",
      );
      last = got.version;
      reads++;
    }
    await writes;
    assert.ok(reads > 0);
  });
});
