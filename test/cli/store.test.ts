/**
 * `tokenkeeper store …` end to end, in-process, against real Redis and PostgreSQL servers: the
 * key file is created once and private, rotation follows the documented order and loses no
 * refresh that lands meanwhile, migration copies everything, and failures exit with their codes.
 */
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { Secret } from "../../src/core/secret.js";
import { FileStore } from "../../src/store/file-store.js";
import { openStore } from "../../src/store/open-store.js";
import { generateKey, Keyring, loadKeyring } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import { requirePostgres, requireRedis, Scratch } from "../support/services.js";
import { type Cli, makeCli } from "./auth-cli-harness.js";

const scratch = new Scratch();
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await scratch.drop();
});

async function cli(): Promise<Cli> {
  const c = await makeCli();
  cleanups.push(() => c.cleanup());
  return c;
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function openWith(url: string, env: NodeJS.ProcessEnv): Promise<Store> {
  const store = await openStore(url, { env });
  cleanups.push(() => store.close());
  return store;
}

describe("tokenkeeper store init", () => {
  it("creates the file store's directory with mode 0700, idempotently", async () => {
    const c = await cli();
    for (let run = 0; run < 2; run++) {
      const r = await c.run(["store", "init", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.json?.kind, "file");
      assert.equal(r.json?.directory, c.env.TOKENKEEPER_HOME);
      assert.equal(await modeOf(c.env.TOKENKEEPER_HOME!), 0o700);
      assert.equal(await modeOf(join(c.env.TOKENKEEPER_HOME!, "connectors")), 0o700);
    }
  });

  it("Redis: creates a 0600 key file once, says how to use it, and never replaces it", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const url = scratch.url("redis");
    const keyFile = join(c.env.TOKENKEEPER_HOME!, "store.key");

    const first = await c.run(["store", "init", "--store", url]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /Created key [0-9a-f]{8} in .*store\.key \(mode 0600\)/);
    assert.ok(first.stdout.includes(`export TOKENKEEPER_KEY_FILE=${keyFile}`), first.stdout);
    assert.equal(await modeOf(keyFile), 0o600);
    const text = await readFile(keyFile, "utf8");
    const ring = await loadKeyring({ TOKENKEEPER_KEY_FILE: keyFile });
    assert.ok(ring);
    assert.ok(!first.stdout.includes(ring.current.export().reveal()), "the key itself is never printed");

    const again = await c.run(["store", "init", "--store", url, "--json"], { TOKENKEEPER_KEY_FILE: keyFile });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(again.json?.key, {
      id: ring.current.id,
      file: keyFile,
      created: false,
      source: "key file",
    });
    assert.equal(await readFile(keyFile, "utf8"), text, "the key file is untouched");

    // The key works: a record written with it reads back through a store opened from the env.
    const store = await openWith(url, { TOKENKEEPER_KEY_FILE: keyFile });
    await store.put("after-init", makeRecord("after-init"), null);
    assert.ok(await store.get("after-init"));
  });

  it("refuses to create a new key for a store that already holds records sealed under another", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const url = scratch.url("redis");
    const other = await openWith(url, { TOKENKEEPER_KEY: generateKey().export().reveal() });
    await other.put("theirs", makeRecord("theirs"), null);

    const r = await c.run(["store", "init", "--store", url, "--json"]);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stderr, /store_key: .*already holds 1 connector/);
    await assert.rejects(stat(join(c.env.TOKENKEEPER_HOME!, "store.key")), /ENOENT/);

    // With a key that cannot open what is there, init says which connectors it cannot read.
    const wrong = await c.run(["store", "init", "--store", url], {
      TOKENKEEPER_KEY: generateKey().export().reveal(),
    });
    assert.equal(wrong.code, 78);
    assert.match(wrong.stderr, /cannot be opened with the configured key \(theirs\)/);
  });

  it("PostgreSQL: applies the migrations once, then reports the schema current", async (t) => {
    if (!(await requirePostgres(t))) return;
    const c = await cli();
    const url = scratch.url("postgres");
    const first = await c.run(["store", "init", "--store", url, "--json"]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(first.json?.migrations, { applied: [1], current: 1 });
    assert.equal(first.json?.kind, "postgres");
    const keyFile = join(c.env.TOKENKEEPER_HOME!, "store.key");
    const second = await c.run(["store", "init", "--store", url], { TOKENKEEPER_KEY_FILE: keyFile });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /The schema is up to date \(version 1\)/);
  });
});

describe("tokenkeeper store info", () => {
  it("names the store without its password, its kind, sealing, key ids and connector count", async (t) => {
    if (!(await requirePostgres(t))) return;
    const c = await cli();
    const withPassword = new URL(scratch.url("postgres"));
    withPassword.password = "hunter2";
    const url = withPassword.href;
    const key = generateKey();
    const env = { TOKENKEEPER_KEY: key.export().reveal() };
    assert.equal((await c.run(["store", "init", "--store", url], env)).code, 0);
    const store = await openWith(url, env);
    for (const name of ["a", "b"]) await store.put(name, makeRecord(name), null);

    const r = await c.run(["store", "info", "--store", url, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json?.kind, "postgres");
    assert.equal(r.json?.encrypted, true);
    assert.deepEqual(r.json?.keyring, { current: key.id, previous: [] });
    assert.equal(r.json?.connectors, 2);
    assert.match(String(r.json?.store), /^postgres:\/\/postgres:\*\*\*@/);
    const text = await c.run(["store", "info", "--store", url], env);
    for (const out of [r.stdout, text.stdout, text.stderr]) assert.ok(!out.includes("hunter2"));

    // Without a key it still answers, and warns.
    const keyless = await c.run(["store", "info", "--store", url, "--json"]);
    assert.equal(keyless.code, 0);
    assert.equal(keyless.json?.keyring, null);
    assert.match(keyless.stderr, /no key is configured/);
  });

  it("reads a percent-encoded encrypt=false as encrypt=false (no key needed, reported unsealed)", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const base = scratch.url("redis");
    const url = `${base}${base.includes("?") ? "&" : "?"}encrypt=%66alse`;
    const init = await c.run(["store", "init", "--store", url, "--json"]);
    assert.equal(init.code, 0, init.stderr);
    assert.equal(init.json?.encrypted, false);
    assert.equal(init.json?.key, null, "no key file is created for an unsealed store");
    const r = await c.run(["store", "info", "--store", url, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json?.encrypted, false);
    assert.deepEqual(r.json?.warnings, []);
  });

  it("fails with store_unavailable (exit 75) naming the store when it is unreachable", async () => {
    const c = await cli();
    const r = await c.run(["store", "info", "--store", "redis://:hunter2@127.0.0.1:1/0", "--json"]);
    assert.equal(r.code, 75);
    assert.match(
      r.stderr,
      /store_unavailable: Redis store redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0 is unreachable/,
    );
    assert.equal(r.json && (r.json.error as { store?: string }).store, "redis://:***@127.0.0.1:1/0");
    assert.ok(!(r.stdout + r.stderr).includes("hunter2"));
  });
});

describe("tokenkeeper store rotate-key", () => {
  it("adds, promotes, re-seals and retires a key without losing a refresh that lands meanwhile", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const url = scratch.url("redis");
    const keyFile = join(c.env.TOKENKEEPER_HOME!, "store.key");
    const env = { TOKENKEEPER_KEY_FILE: keyFile };
    assert.equal((await c.run(["store", "init", "--store", url])).code, 0);
    const oldRing = (await loadKeyring(env))!;
    const names = Array.from({ length: 12 }, (_, i) => `conn-${i}`);
    const seeded = await openWith(url, env);
    for (const name of names) await seeded.put(name, makeRecord(name), null);

    // 1. --add: a new previous key; nothing is re-sealed.
    const added = await c.run(["store", "rotate-key", "--store", url, "--add", "--json"], env);
    assert.equal(added.code, 0, added.stderr);
    const newId = String(added.json?.added);
    assert.deepEqual(added.json?.keyring, { current: oldRing.current.id, previous: [newId] });
    assert.equal(added.json?.resealed, 0);
    assert.equal(await modeOf(keyFile), 0o600);
    const bothKeys = (await loadKeyring(env))!;

    // 2. --promote, while another machine (still writing with the old key, able to read the new
    //    one) refreshes every connector. Its writes are compare-and-set too, like a real refresh.
    const other = await openStore(url, {
      env: {},
      keyring: new Keyring(oldRing.current, [bothKeys.find(newId)!]),
    });
    cleanups.push(() => other.close());
    // It keeps refreshing for the whole of the promotion, so the two really interleave.
    const latest = new Map<string, string>();
    let promoting = true;
    const refreshes = (async () => {
      for (let round = 0; promoting || round < 2; round++) {
        for (const name of names) {
          const value = `refreshed-${name}-${round}`;
          for (;;) {
            const current = await other.get(name);
            const next = makeRecord(name, { tokens: makeTokens({ accessToken: new Secret(value) }) });
            try {
              await other.put(name, next, current!.version);
              break;
            } catch {}
          }
          latest.set(name, value);
        }
      }
    })();
    const promoted = await c.run(["store", "rotate-key", "--store", url, "--promote", newId, "--json"], env);
    promoting = false;
    await refreshes;
    assert.equal(promoted.code, 0, promoted.stderr);
    assert.deepEqual(promoted.json?.keyring, { current: newId, previous: [oldRing.current.id] });
    assert.equal(Number(promoted.json?.resealed) + Number(promoted.json?.unchanged), names.length);
    assert.equal((await loadKeyring(env))!.current.id, newId, "the key file names the new key first");

    // 3. Re-seal what the other machine wrote with the old key after its record was re-sealed.
    const resealed = await c.run(["store", "rotate-key", "--store", url], env);
    assert.equal(resealed.code, 0, resealed.stderr);
    assert.match(resealed.stdout, /Re-sealed \d+ of 12 connector\(s\) under key [0-9a-f]{8}/);
    t.diagnostic(`promote: ${promoted.json?.resealed} re-sealed; then ${resealed.stdout.trim()}`);

    // 4. Retire the old key; every record opens with the new key alone and holds the refresh.
    const retired = await c.run(
      ["store", "rotate-key", "--store", url, "--retire", oldRing.current.id, "--json"],
      env,
    );
    assert.equal(retired.code, 0, retired.stderr);
    assert.deepEqual(retired.json?.keyring, { current: newId, previous: [] });
    assert.equal(await modeOf(keyFile), 0o600);
    const newOnly = await openWith(url, env);
    for (const name of names) {
      const got = await newOnly.get(name);
      assert.equal(
        got?.record.tokens?.accessToken.reveal(),
        latest.get(name),
        `${name}: no refresh was lost`,
      );
    }
    const oldOnly = await openStore(url, { env: {}, keyring: oldRing });
    cleanups.push(() => oldOnly.close());
    await assert.rejects(oldOnly.get(names[0]!), { code: "store_key" });
  });

  it("refuses to retire the current key or edit keys given inline, and to rotate a file store", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const url = scratch.url("redis");
    const keyFile = join(c.env.TOKENKEEPER_HOME!, "store.key");
    assert.equal((await c.run(["store", "init", "--store", url])).code, 0);
    const ring = (await loadKeyring({ TOKENKEEPER_KEY_FILE: keyFile }))!;
    const before = await readFile(keyFile, "utf8");

    const current = await c.run(["store", "rotate-key", "--store", url, "--retire", ring.current.id], {
      TOKENKEEPER_KEY_FILE: keyFile,
    });
    assert.equal(current.code, 78);
    assert.match(current.stderr, /is the current key/);
    assert.equal(await readFile(keyFile, "utf8"), before);

    const inline = { TOKENKEEPER_KEY: ring.current.export().reveal() };
    const add = await c.run(["store", "rotate-key", "--store", url, "--add"], inline);
    assert.equal(add.code, 78);
    assert.match(add.stderr, /edits a key file/);
    const reseal = await c.run(["store", "rotate-key", "--store", url, "--json"], inline);
    assert.equal(reseal.code, 0, reseal.stderr);

    assert.equal((await c.run(["store", "rotate-key"])).code, 78);
    assert.equal((await c.run(["store", "rotate-key", "--store", url, "--add", "--retire", "x"])).code, 64);
  });
});

describe("tokenkeeper store migrate", () => {
  it("copies every connector from the file store into Redis and says what moved", async (t) => {
    if (!(await requireRedis(t))) return;
    const c = await cli();
    const source = new FileStore({ dir: c.env.TOKENKEEPER_HOME! });
    const names = ["alpha", "beta", "gamma"];
    for (const name of names) await source.put(name, makeRecord(name), null);
    await source.put("beta", makeRecord("beta", { scope: "mcp:tools" }), 1);
    const url = scratch.url("redis");
    const env = { TOKENKEEPER_KEY: generateKey().export().reveal() };
    const from = pathToFileURL(c.env.TOKENKEEPER_HOME!).href;

    const r = await c.run(["store", "migrate", "--from", from, "--to", url, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json?.copied, [
      { name: "alpha", version: 1 },
      { name: "beta", version: 2 },
      { name: "gamma", version: 1 },
    ]);
    assert.equal(r.json?.passes, 1);
    const target = await openWith(url, env);
    assert.deepEqual(await target.list(), names);
    assert.equal((await target.get("beta"))?.record.scope, "mcp:tools");

    const some = await c.run(["store", "migrate", "--from", from, "--to", url, "alpha"], env);
    assert.equal(some.code, 0, some.stderr);
    assert.match(
      some.stdout,
      /Copied 1 connector\(s\) from file:.* to redis:.*\n {2}alpha \(source version 1\)/,
    );

    assert.equal((await c.run(["store", "migrate", "--to", url], env)).code, 64);
    const same = await c.run(["store", "migrate", "--from", url, "--to", url], env);
    assert.equal(same.code, 78);
  });
});

describe("tokenkeeper store (usage)", () => {
  it("exits 64 for a missing or unknown subcommand and for unknown options", async () => {
    const c = await cli();
    assert.equal((await c.run(["store"])).code, 64);
    assert.equal((await c.run(["store", "shred"])).code, 64);
    assert.equal((await c.run(["store", "info", "--bogus"])).code, 64);
    const help = await c.run(["store", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /rotate-key/);
  });
});
