import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  ConfigError,
  ConflictError,
  StoreCorruptError,
  StoreKeyError,
  StorePermissionError,
} from "../../src/core/errors.js";
import { serializeRecord } from "../../src/core/record.js";
import {
  generateKey,
  isCurrentEnvelope,
  isSealed,
  Keyring,
  loadKeyring,
  type RawRecordAccess,
  RecordCodec,
  resealAll,
  Sealer,
  SealKey,
  sealedKeyId,
} from "../../src/store/sealing.js";
import { makeRecord } from "../support/fixtures.js";
import { sealLegacy } from "./fixtures/legacy-seal.js";

const ring = (...keys: SealKey[]) => new Keyring(keys[0]!, keys.slice(1));

describe("Sealer", () => {
  it("seals into a tk2 envelope under the current key, with a fresh IV each time", () => {
    const key = generateKey();
    const sealer = new Sealer(ring(key));
    const a = sealer.seal("demo", 1, "hello refresh-token");
    const b = sealer.seal("demo", 1, "hello refresh-token");
    assert.match(a, new RegExp(`^tk2\\.${key.id}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]+$`));
    assert.notEqual(a, b);
    assert.notEqual(a.split(".")[2], b.split(".")[2], "IVs differ");
    assert.ok(!a.includes("refresh-token"));
    assert.equal(sealer.open("demo", 1, a), "hello refresh-token");
    assert.equal(sealedKeyId(a), key.id);
  });

  it("binds the record version: an older blob of the same connector put back is refused (rollback)", () => {
    const sealer = new Sealer(ring(generateKey()), { where: "postgres://db/tk" });
    const v3 = sealer.seal("demo", 3, "refresh-token-3");
    const v4 = sealer.seal("demo", 4, "refresh-token-4");
    assert.equal(sealer.open("demo", 4, v4), "refresh-token-4");
    // A writer without the key puts v3's blob in place while the store says version 4 (or 5).
    assert.throws(() => sealer.open("demo", 4, v3), /older version put back in place of version 4/);
    assert.throws(() => sealer.open("demo", 5, v3), StoreCorruptError);
  });

  it("reads a legacy tk1 record (no version in the AAD) at any version; writes are always tk2", () => {
    const key = generateKey();
    const sealer = new Sealer(ring(key));
    const legacy = sealLegacy(key, "demo", "old-format-record");
    assert.equal(sealer.open("demo", 7, legacy), "old-format-record");
    assert.equal(sealedKeyId(legacy), key.id);
    assert.throws(() => sealer.open("other", 7, legacy), StoreCorruptError, "the name is still bound");
    assert.ok(isSealed(legacy) && !isCurrentEnvelope(legacy));
    assert.ok(isCurrentEnvelope(sealer.seal("demo", 8, "x")));
  });

  it("names a key by the first 8 hex digits of its SHA-256", () => {
    const bytes = randomBytes(32);
    const key = SealKey.parse(bytes.toString("hex"));
    assert.equal(key.id, createHash("sha256").update(bytes).digest("hex").slice(0, 8));
    assert.equal(SealKey.parse(bytes.toString("base64")).id, key.id);
    assert.equal(SealKey.parse(bytes.toString("base64url")).id, key.id);
  });

  it("refuses a blob copied onto another connector (the name is authenticated)", () => {
    const sealer = new Sealer(ring(generateKey()), { where: "redis://cache/0" });
    const sealed = sealer.seal("alpha", 1, "secret");
    assert.throws(() => sealer.open("beta", 1, sealed), StoreCorruptError);
  });

  it("refuses a tampered or malformed blob as corrupt", () => {
    const sealer = new Sealer(ring(generateKey()));
    const sealed = sealer.seal("demo", 1, "secret text");
    const body = sealed.split(".")[3]!;
    const flipped = `${body[0] === "A" ? "B" : "A"}${body.slice(1)}`;
    assert.throws(() => sealer.open("demo", 1, sealed.replace(body, flipped)), StoreCorruptError);
    assert.throws(() => sealer.open("demo", 1, "tk2.nothex.x.y"), StoreCorruptError);
  });

  it("opens with a previous key, and names the missing key and the connector otherwise", () => {
    const old = generateKey();
    const current = generateKey();
    const sealed = new Sealer(ring(old)).seal("demo", 1, "secret");
    assert.equal(new Sealer(ring(current, old)).open("demo", 1, sealed), "secret");
    const error = (() => {
      try {
        new Sealer(ring(current), { where: "postgres://db/tk" }).open("demo", 1, sealed);
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof StoreKeyError);
    assert.equal(error.code, "store_key");
    assert.match(error.message, /connector "demo" in postgres:\/\/db\/tk/);
    assert.ok(error.message.includes(old.id));
    assert.equal(error.fields.keyId, old.id);
  });
});

describe("keys and keyrings", () => {
  it("never print key material", () => {
    const key = generateKey();
    const keyring = ring(key, generateKey());
    const raw = key.export().reveal();
    for (const text of [
      String(key),
      JSON.stringify(key),
      inspect(key),
      String(keyring),
      JSON.stringify(keyring),
      inspect(keyring),
      inspect({ keyring }, { depth: 5, showHidden: true }),
    ]) {
      assert.ok(!text.includes(raw), text);
      assert.ok(text.includes(key.id), text);
    }
    assert.equal(String(key.export()), "[redacted]");
  });

  it("rejects a key that is not 32 bytes without echoing it", () => {
    const short = randomBytes(31).toString("hex");
    const error = (() => {
      try {
        SealKey.parse(short, "TOKENKEEPER_KEY");
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof ConfigError);
    assert.ok(!error.message.includes(short));
  });

  it("rotates: the new key becomes current and the old ones stay readable", () => {
    const a = generateKey();
    const b = generateKey();
    const rotated = ring(a).rotatedTo(b);
    assert.deepEqual(rotated.ids, [b.id, a.id]);
    assert.deepEqual(rotated.without(a.id).ids, [b.id]);
    assert.throws(() => rotated.without(b.id), ConfigError);
    const text = rotated.toKeyFileText().reveal();
    assert.ok(text.indexOf(b.export().reveal()) < text.indexOf(a.export().reveal()));
  });
});

describe("loadKeyring", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const keyFile = async (text: string, mode: number) => {
    const dir = await mkdtemp(join(tmpdir(), "tk-keys-"));
    dirs.push(dir);
    const file = join(dir, "store.key");
    await writeFile(file, text);
    await chmod(file, mode);
    return file;
  };

  it("returns null when no key is configured", async () => {
    assert.equal(await loadKeyring({}), null);
  });

  it("reads TOKENKEEPER_KEY: current key first, previous keys after", async () => {
    const a = generateKey();
    const b = generateKey();
    const keyring = await loadKeyring({ TOKENKEEPER_KEY: `${a.export().reveal()}, ${b.export().reveal()}` });
    assert.deepEqual(keyring?.ids, [a.id, b.id]);
  });

  it("reads a 0600 key file with comments, and refuses one others can read", async () => {
    const a = generateKey();
    const b = generateKey();
    const text = `# store keys\n${a.export().reveal()}  # current\n\n${b.export().reveal()}\n`;
    const keyring = await loadKeyring({ TOKENKEEPER_KEY_FILE: await keyFile(text, 0o600) });
    assert.deepEqual(keyring?.ids, [a.id, b.id]);
    const roundTrip = await loadKeyring({
      TOKENKEEPER_KEY_FILE: await keyFile(keyring!.toKeyFileText().reveal(), 0o600),
    });
    assert.deepEqual(roundTrip?.ids, keyring?.ids);

    const open = await keyFile(text, 0o644);
    await assert.rejects(
      loadKeyring({ TOKENKEEPER_KEY_FILE: open }, { platform: "linux" }),
      StorePermissionError,
    );
    await assert.rejects(loadKeyring({ TOKENKEEPER_KEY_FILE: await keyFile(text, 0o640) }), /chmod 600/);
  });

  it("refuses ambiguous or unusable configuration", async () => {
    const key = generateKey().export().reveal();
    await assert.rejects(
      loadKeyring({ TOKENKEEPER_KEY: key, TOKENKEEPER_KEY_FILE: "/nonexistent" }),
      ConfigError,
    );
    await assert.rejects(
      loadKeyring({ TOKENKEEPER_KEY_FILE: join(tmpdir(), "tk-no-such-key") }),
      ConfigError,
    );
    await assert.rejects(loadKeyring({ TOKENKEEPER_KEY: "not-a-key" }), ConfigError);
    await assert.rejects(
      loadKeyring({ TOKENKEEPER_KEY_FILE: await keyFile("# nothing\n", 0o600) }),
      ConfigError,
    );
  });
});

describe("RecordCodec", () => {
  it("round-trips a record sealed, and never reads the other kind silently", () => {
    const sealed = new RecordCodec(new Sealer(ring(generateKey())), "redis://cache/0");
    const plain = new RecordCodec(null, "redis://cache/0");
    const record = makeRecord("demo");
    const text = sealed.encode("demo", 1, record);
    assert.deepEqual(serializeRecord(sealed.decode("demo", 1, text)), serializeRecord(record));
    assert.throws(() => plain.decode("demo", 1, text), StoreKeyError);
    assert.throws(() => sealed.decode("demo", 1, plain.encode("demo", 1, record)), StoreKeyError);
    assert.deepEqual(
      serializeRecord(plain.decode("demo", 1, plain.encode("demo", 1, record))),
      serializeRecord(record),
    );
  });
});

describe("resealAll", () => {
  it("upgrades legacy tk1 records to tk2 even when they are under the current key", async () => {
    const key = generateKey();
    const entries = new Map([["old", { text: sealLegacy(key, "old", "token-old"), version: 2 }]]);
    const access: RawRecordAccess = {
      list: async () => [...entries.keys()],
      getRaw: async (name) => entries.get(name) ?? null,
      putRaw: async (name, text, expected) => {
        entries.set(name, { text, version: expected + 1 });
        return expected + 1;
      },
    };
    const report = await resealAll(access, ring(key), ring(key), { where: "test" });
    assert.deepEqual(report.resealed, ["old"]);
    const upgraded = entries.get("old")!;
    assert.ok(isCurrentEnvelope(upgraded.text));
    assert.equal(new Sealer(ring(key)).open("old", 3, upgraded.text), "token-old");
  });

  /** In-memory raw access whose first write to `racy` loses to a refresh that lands first. */
  function rawStore(
    entries: Map<string, { text: string; version: number }>,
    racy: string,
    refresh: () => string,
  ) {
    let raced = false;
    const access: RawRecordAccess = {
      list: async () => [...entries.keys()].sort(),
      getRaw: async (name) => entries.get(name) ?? null,
      putRaw: async (name, text, expected) => {
        if (name === racy && !raced) {
          raced = true;
          const cur = entries.get(name)!;
          entries.set(name, { text: refresh(), version: cur.version + 1 });
        }
        const cur = entries.get(name);
        if (cur?.version !== expected) throw new ConflictError(name, expected, cur?.version ?? null);
        entries.set(name, { text, version: expected + 1 });
        return expected + 1;
      },
    };
    return access;
  }

  it("re-reads and re-seals a record a refresh changed meanwhile, instead of overwriting it", async () => {
    const k1 = generateKey();
    const k2 = generateKey();
    const oldSealer = new Sealer(ring(k1));
    const entries = new Map([
      ["a", { text: oldSealer.seal("a", 1, "token-a1"), version: 1 }],
      ["b", { text: oldSealer.seal("b", 3, "token-b1"), version: 3 }],
    ]);
    const access = rawStore(entries, "b", () => oldSealer.seal("b", 4, "token-b2-refreshed"));
    const report = await resealAll(access, ring(k1), ring(k2, k1), { where: "test" });
    assert.deepEqual(report, { keyId: k2.id, resealed: ["a", "b"], unchanged: [] });

    const newSealer = new Sealer(ring(k2));
    assert.equal(newSealer.open("a", 2, entries.get("a")!.text), "token-a1");
    assert.equal(newSealer.open("b", 5, entries.get("b")!.text), "token-b2-refreshed");
    assert.equal(entries.get("b")!.version, 5);

    const again = await resealAll(access, ring(k2, k1), ring(k2), { where: "test" });
    assert.deepEqual(again.unchanged, ["a", "b"]);
  });
});
