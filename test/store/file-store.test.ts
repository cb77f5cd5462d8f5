import assert from "node:assert/strict";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import fc from "fast-check";
import {
  ConfigError,
  StoreCorruptError,
  StorePermissionError,
  StoreUnavailableError,
} from "../../src/core/errors.js";
import { type ConnectorRecord, initialState, serializeRecord, type TokenSet } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import { FileStore } from "../../src/store/file-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import { describeStoreConformance } from "./conformance.js";
import { spawnChild } from "./fixtures/children.js";

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tokenkeeper-file-store-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A store in a fresh directory, plus where its connector files live. */
async function freshStore(t: TestContext) {
  const dir = join(await tempDir(t), "state");
  const store = new FileStore({ dir });
  return { dir, store, connectors: join(dir, "connectors") };
}

function mode(st: { mode: number }): number {
  return st.mode & 0o777;
}

describeStoreConformance("file", {
  async create() {
    const root = await mkdtemp(join(tmpdir(), "tokenkeeper-conformance-"));
    const dir = join(root, "state");
    return {
      store: new FileStore({ dir }),
      second: async () => new FileStore({ dir }),
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  },
});

describe("FileStore layout", () => {
  it("keeps one 0600 file per connector, version inside, in 0700 directories", async (t) => {
    const { dir, store, connectors } = await freshStore(t);
    assert.equal(await store.put("github", makeRecord("github"), null), 1);
    assert.equal(await store.put("github", makeRecord("github"), 1), 2);

    const file = join(connectors, "github.json");
    const onDisk = JSON.parse(await readFile(file, "utf8"));
    assert.equal(onDisk.version, 2);
    assert.deepEqual(onDisk.record, JSON.parse(JSON.stringify(serializeRecord(makeRecord("github")))));
    assert.equal(mode(await stat(file)), 0o600);
    for (const d of [dir, connectors, join(dir, "locks")]) assert.equal(mode(await stat(d)), 0o700, d);
    assert.deepEqual(await readdir(connectors), ["github.json"], "no temp file left behind");
    assert.ok(store.location.startsWith("file:///"));
    assert.ok(store.location.endsWith("/state"));
  });

  it("refuses connector names that could escape or hide in the directory", async (t) => {
    const { store } = await freshStore(t);
    for (const bad of ["../escape", "a/b", ".hidden", "", "x".repeat(65)]) {
      await assert.rejects(store.get(bad), ConfigError, bad);
      await assert.rejects(store.put(bad, makeRecord("x"), null), ConfigError, bad);
    }
  });

  it("deletes durably and leaves nothing behind", async (t) => {
    const { store, connectors } = await freshStore(t);
    await store.put("gone", makeRecord("gone"), null);
    assert.equal(await store.delete("gone", 1), true);
    assert.deepEqual(await readdir(connectors), []);
  });
});

describe("FileStore refuses unsafe files, like ssh with keys", () => {
  it("a token file readable by others (0644), naming the file and `chmod 600`", async (t) => {
    const { store, connectors } = await freshStore(t);
    await store.put("open", makeRecord("open"), null);
    const file = join(connectors, "open.json");
    await chmod(file, 0o644);
    const error = await store.get("open").then(
      () => assert.fail("expected a refusal"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StorePermissionError);
    assert.equal(error.code, "store_permission");
    assert.equal(error.fields.file, file);
    assert.match(error.message, new RegExp(`chmod 600 ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    assert.doesNotMatch(error.message, /access-token-value/);
    // A write reads the current version first, so it refuses too rather than replacing the file.
    await assert.rejects(store.put("open", makeRecord("open"), 1), StorePermissionError);
  });

  it("a state directory others can enter (0755), naming `chmod 700`", async (t) => {
    const dir = join(await tempDir(t), "state");
    await mkdir(dir);
    await chmod(dir, 0o755);
    const store = new FileStore({ dir });
    await assert.rejects(store.get("any"), (e: unknown) => {
      assert.ok(e instanceof StorePermissionError);
      assert.equal(e.fields.file, dir);
      assert.match(e.message, /chmod 700 /);
      return true;
    });
    await assert.rejects(store.list(), StorePermissionError);
    // Fixed by the user: the same store works without being recreated.
    await chmod(dir, 0o700);
    assert.deepEqual(await store.list(), []);
  });

  it("a token file that is a symlink, without following it", async (t) => {
    const { store, connectors } = await freshStore(t);
    // The target is a perfectly good private record; it must still not be read through the link.
    const elsewhere = join(await tempDir(t), "real.json");
    await store.put("real", makeRecord("real"), null);
    await writeFile(elsewhere, await readFile(join(connectors, "real.json")), { mode: 0o600 });
    const link = join(connectors, "linked.json");
    await symlink(elsewhere, link);

    await assert.rejects(store.get("linked"), (e: unknown) => {
      assert.ok(e instanceof StorePermissionError);
      assert.equal(e.fields.file, link);
      assert.match(e.message, /symbolic link/);
      return true;
    });
    const before = await readFile(elsewhere, "utf8");
    await assert.rejects(store.put("linked", makeRecord("linked"), 1), StorePermissionError);
    assert.equal(await readFile(elsewhere, "utf8"), before, "the link target is untouched");
    assert.ok((await lstat(link)).isSymbolicLink(), "the link is not replaced");
  });

  it("a token file owned by another user, naming the owner", {
    skip: process.getuid?.() === 0 ? false : "needs root to chown a file to another uid",
  }, async (t) => {
    const { store, connectors } = await freshStore(t);
    await store.put("theirs", makeRecord("theirs"), null);
    const file = join(connectors, "theirs.json");
    await chown(file, 65534, 65534);
    await assert.rejects(store.get("theirs"), (e: unknown) => {
      assert.ok(e instanceof StorePermissionError);
      assert.equal(e.fields.file, file);
      assert.equal(e.fields.owner, 65534);
      assert.match(e.message, /owned by uid 65534/);
      return true;
    });
  });
});

describe("FileStore moves a corrupt file aside, never deletes it", () => {
  const secret = "leaked-secret-9f8e7d";
  const valid = JSON.stringify({
    version: 3,
    record: serializeRecord(
      makeRecord("broken", { tokens: makeTokens({ accessToken: new Secret(secret) }) }),
    ),
  });
  const validRecord = JSON.parse(valid).record;
  const damagedToken = Buffer.from(valid.replace(secret, "leaked-secret-\u00e9"), "utf8");
  damagedToken[damagedToken.indexOf(0xc3)] = 0xff; // one flipped byte inside a token
  const cases: { label: string; content: string | Buffer; expect: RegExp }[] = [
    { label: "a damaged byte (invalid UTF-8)", content: damagedToken, expect: /not valid UTF-8/ },
    {
      label: "bad JSON",
      content: `{"version": 1, "record": {"access_token": "${secret}"`,
      expect: /not valid JSON/,
    },
    { label: "truncated JSON", content: valid.slice(0, Math.floor(valid.length / 2)), expect: /truncated/ },
    { label: "an empty file", content: "", expect: /empty/ },
    {
      label: "a missing version",
      content: JSON.stringify({ record: validRecord }),
      expect: /field "version"/,
    },
    {
      label: "a record that breaks the schema",
      content: JSON.stringify({
        version: 1,
        record: { ...validRecord, tokens: { ...validRecord.tokens, access_token: "" } },
      }),
      expect: /field "tokens.access_token"/,
    },
  ];

  for (const { label, content, expect } of cases) {
    it(`${label}: a StoreCorruptError naming the file and where it went`, async (t) => {
      const { store, connectors } = await freshStore(t);
      await store.list(); // creates the directories
      const file = join(connectors, "broken.json");
      await writeFile(file, content, { mode: 0o600 });

      const error = await store.get("broken").then(
        () => assert.fail("expected StoreCorruptError"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreCorruptError, String(error));
      assert.equal(error.code, "store_corrupt");
      assert.equal(error.fields.file, file);
      assert.match(error.message, expect);
      const movedTo = error.fields.movedTo as string;
      assert.match(movedTo, /broken\.json\.corrupt-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$/);
      assert.ok(error.message.includes(movedTo));
      assert.ok(!error.message.includes(secret), "the message never quotes the file");
      assert.ok(!JSON.stringify(error).includes(secret));

      assert.deepEqual(await readFile(movedTo), Buffer.from(content), "kept byte for byte");
      assert.equal(mode(await stat(movedTo)), 0o600);
      assert.equal(await store.get("broken"), null);
      assert.deepEqual(await store.list(), []);
      assert.equal(
        await store.put("broken", makeRecord("broken"), null),
        1,
        "the connector can be set up again",
      );
    });
  }

  it("a put over a corrupt file moves it aside instead of overwriting it", async (t) => {
    const { store, connectors } = await freshStore(t);
    await store.list();
    await writeFile(join(connectors, "over.json"), "{oops", { mode: 0o600 });
    await assert.rejects(store.put("over", makeRecord("over"), null), (e: unknown) => {
      assert.ok(e instanceof StoreCorruptError);
      assert.ok(typeof e.fields.movedTo === "string");
      return true;
    });
    const names = await readdir(connectors);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^over\.json\.corrupt-/);
    assert.equal(await store.put("over", makeRecord("over"), null), 1);
  });

  it("two corruptions at the same instant get two names", async (t) => {
    const { store, connectors } = await freshStore(t);
    // A frozen clock: both moves happen at the same "time".
    const clock = { now: () => Date.UTC(2030, 0, 1), sleep: async () => {} };
    const frozen = new FileStore({ dir: join(connectors, ".."), clock });
    await store.list();
    const moved: string[] = [];
    for (const content of ["{first", "{second"]) {
      await writeFile(join(connectors, "twice.json"), content, { mode: 0o600 });
      await frozen.get("twice").catch((e: StoreCorruptError) => moved.push(e.fields.movedTo as string));
    }
    assert.equal(new Set(moved).size, 2);
    assert.equal(await readFile(moved[0]!, "utf8"), "{first");
    assert.equal(await readFile(moved[1]!, "utf8"), "{second");
  });
});

describe("FileStore write mutex", () => {
  it("bounds the wait for another writer and says who holds it", async (t) => {
    const { dir, store } = await freshStore(t);
    await store.list();
    // A writer that is alive and stuck: the holder is a live process (the test runner that started us).
    const token = "ef".repeat(16);
    const mutex = join(dir, "locks", "stuck.write");
    await mkdir(mutex);
    const holder = {
      pid: process.ppid,
      hostname: hostname(),
      token,
      acquiredAt: 0,
      expiresAt: Date.now() + 60_000,
    };
    await writeFile(join(mutex, `${token}.json`), JSON.stringify(holder), { mode: 0o600 });

    const impatient = new FileStore({ dir, writeWaitMs: 100 });
    const started = Date.now();
    await assert.rejects(impatient.put("stuck", makeRecord("stuck"), null), (e: unknown) => {
      assert.ok(e instanceof StoreUnavailableError);
      assert.equal(e.fields.holderPid, process.ppid);
      assert.match(e.message, /stuck\.write/);
      return true;
    });
    assert.ok(Date.now() - started < 1_000);
    assert.equal(await store.get("stuck"), null, "nothing was written");
  });
});

describe("FileStore across processes", () => {
  it("compare-and-set: exactly one of 6 processes writing the same version wins", async (t) => {
    const { dir, store } = await freshStore(t);
    await store.put("contended", makeRecord("contended"), null);
    const children = Array.from({ length: 6 }, (_, i) =>
      spawnChild(["cas", dir, "contended", "1", `token-from-child-${i}`]),
    );
    t.after(() => Promise.all(children.map((c) => c.kill())));
    for (const c of children) assert.equal(await c.nextLine(), "ready");
    for (const c of children) c.send("go");
    const results = await Promise.all(children.map(async (c) => JSON.parse(await c.nextLine())));

    const winners = results.flatMap((r, i) => (r.won !== undefined ? [{ i, version: r.won }] : []));
    assert.equal(winners.length, 1, JSON.stringify(results));
    assert.equal(winners[0]!.version, 2);
    assert.equal(results.filter((r) => r.conflict).length, 5);
    const stored = await store.get("contended");
    assert.equal(stored?.version, 2);
    assert.equal(stored?.record.tokens?.accessToken.reveal(), `token-from-child-${winners[0]!.i}`);
  });
});

describe("FileStore round trip (property)", () => {
  // Any code point, astral ones included, plus the odd lone surrogate (JSON escapes it as \udXXX).
  const unit = fc.oneof(
    { arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), weight: 20 },
    { arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), weight: 1 },
  );
  const text = fc.string({ unit, minLength: 1, maxLength: 40 });
  const epoch = fc.integer({ min: 0, max: 4_102_444_800_000 });
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

  const tokens: fc.Arbitrary<TokenSet> = fc
    .record({
      access: text,
      refresh: opt(text),
      tokenType: fc.constantFrom("Bearer", "bearer", "DPoP"),
      scope: opt(fc.string({ unit: "grapheme", maxLength: 30 })),
      expiresAt: fc.option(epoch, { nil: null }),
      obtainedAt: epoch,
      refreshTokenIssuedAt: opt(epoch),
      refreshTokenExpiresAt: opt(fc.option(epoch, { nil: null })),
    })
    .map((t) => ({
      accessToken: new Secret(t.access),
      tokenType: t.tokenType,
      refreshToken: t.refresh === undefined ? undefined : new Secret(t.refresh),
      scope: t.scope,
      expiresAt: t.expiresAt,
      obtainedAt: t.obtainedAt,
      refreshTokenIssuedAt: t.refreshTokenIssuedAt,
      refreshTokenExpiresAt: t.refreshTokenExpiresAt,
    }));

  const record: fc.Arbitrary<ConnectorRecord> = fc
    .record({
      tokens: fc.option(tokens, { nil: null }),
      scope: opt(fc.string({ unit: "grapheme", maxLength: 30 })),
      clientSecret: opt(text),
      grant: fc.constantFrom(
        "authorization_code" as const,
        "device_code" as const,
        "client_credentials" as const,
      ),
      refreshCount: fc.nat(),
      lastError: opt(
        fc.record({ code: fc.string(), description: opt(fc.string({ unit: "binary" })), at: epoch }),
      ),
      headers: opt(
        fc.dictionary(fc.stringMatching(/^[A-Za-z][A-Za-z-]{0,15}$/), fc.string({ unit: "binary" }), {
          noNullPrototype: true,
        }),
      ),
    })
    .map((r) =>
      makeRecord("prop", {
        tokens: r.tokens,
        scope: r.scope,
        grant: r.grant,
        client: {
          kind: "preregistered",
          clientId: "client-123",
          clientSecret: r.clientSecret === undefined ? undefined : new Secret(r.clientSecret),
          tokenEndpointAuthMethod: r.clientSecret === undefined ? "none" : "client_secret_post",
        },
        state: { ...initialState(), refreshCount: r.refreshCount, lastError: r.lastError },
        settings: { headers: r.headers },
      }),
    );

  it("put → get gives back exactly what was put, secrets included", async (t) => {
    const { store } = await freshStore(t);
    let version: number | null = null;
    await fc.assert(
      fc.asyncProperty(record, async (r) => {
        version = await store.put("prop", r, version);
        const got = await store.get("prop");
        assert.equal(got?.version, version);
        assert.deepEqual(serializeRecord(got!.record), serializeRecord(r));
      }),
      { numRuns: 60 },
    );
  });
});
