/**
 * The store layer's operator functions, called as a library (no CLI): init settles a key file,
 * key rotation re-seals every record under the promoted key, and copyStore moves connectors.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { openStore } from "../../src/store/open-store.js";
import { loadKeyring } from "../../src/store/sealing.js";
import { copyStore, describeStore, initStore, rotateStoreKey } from "../../src/store/store-admin.js";
import type { Store } from "../../src/store/types.js";
import { makeRecord } from "../support/fixtures.js";
import { requireRedis, Scratch } from "../support/services.js";

const scratch = new Scratch();
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await scratch.drop();
});

async function home(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tk-admin-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function open(url: string, env: NodeJS.ProcessEnv): Promise<Store> {
  const store = await openStore(url, { env });
  cleanups.push(() => store.close());
  return store;
}

describe("store administration as a library", () => {
  it("initializes a Redis store with a new key file, then rotates to a new key without losing a record", async (t) => {
    if (!(await requireRedis(t))) return;
    const url = scratch.url("redis");
    const keyFile = join(await home(), "store.key");
    const env = { TOKENKEEPER_KEY_FILE: keyFile };

    const init = await initStore(url, { env });
    assert.equal(init.kind, "redis");
    assert.equal(init.encrypted, true);
    assert.equal(init.key?.created, true);
    assert.equal(init.key?.file, keyFile);
    const first = init.key!.id;

    const store = await open(url, env);
    for (const name of ["a", "b"]) await store.put(name, makeRecord(name), null);

    const added = await rotateStoreKey(url, { step: "add" }, { env });
    assert.deepEqual(added.keyring, { current: first, previous: [added.added!] });
    const promoted = await rotateStoreKey(url, { step: "promote", keyId: added.added! }, { env });
    assert.equal(promoted.keyring.current, added.added);
    assert.equal(promoted.resealed, 2);
    const retired = await rotateStoreKey(url, { step: "retire", keyId: first }, { env });
    assert.deepEqual(retired.keyring, { current: added.added, previous: [] });
    assert.deepEqual((await loadKeyring(env))?.ids, [added.added]);

    // Only the new key is left, and it opens every record.
    const reopened = await open(url, env);
    assert.equal((await reopened.get("a"))?.record.name, "a");
    const info = await describeStore(url, { env });
    assert.deepEqual(info.keyring, { current: added.added, previous: [] });
    assert.equal(info.connectors, 2);
    assert.deepEqual(info.warnings, []);
  });

  it("copies every connector between stores opened by URL", async () => {
    const from = pathToFileURL(await home()).href;
    const to = pathToFileURL(await home()).href;
    const source = await open(from, {});
    for (const name of ["x", "y"]) await source.put(name, makeRecord(name), null);
    const report = await copyStore(from, to, [], { env: {} });
    assert.deepEqual(
      report.copied.map((c) => c.name),
      ["x", "y"],
    );
    assert.deepEqual(await (await open(to, {})).list(), ["x", "y"]);
  });
});
