/**
 * The one store-URL parser: every caller (openStore, the network stores, `tokenkeeper store`)
 * reads kind, parameters and sealing from it, so a percent-encoded parameter means the same
 * thing everywhere.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { openStore } from "../../src/store/open-store.js";
import { parseStoreUrl, storeKindOf } from "../../src/store/store-url.js";

describe("parseStoreUrl", () => {
  it("names the kind from the scheme, case-insensitively", () => {
    assert.equal(storeKindOf("file:///tmp/x"), "file");
    assert.equal(storeKindOf("REDIS://h/0"), "redis");
    assert.equal(storeKindOf("rediss://h/0"), "redis");
    assert.equal(storeKindOf("postgres://u@h/db"), "postgres");
    assert.equal(storeKindOf("postgresql://u@h/db"), "postgres");
    assert.equal(storeKindOf("mysql://h/db"), null);
    assert.equal(storeKindOf("/just/a/path"), null);
  });

  it("reads encrypt=false the same whether or not it is percent-encoded", () => {
    for (const text of [
      "redis://127.0.0.1:6379/0?encrypt=false",
      "redis://127.0.0.1:6379/0?encrypt=%66alse",
      "redis://127.0.0.1:6379/0?%65ncrypt=false",
      "postgres://u@127.0.0.1/db?schema=s&encrypt=%66%61%6c%73%65",
    ]) {
      const parsed = parseStoreUrl(text);
      assert.ok(parsed.kind !== "file");
      assert.equal(parsed.encrypt, false, text);
      assert.equal(parsed.sealed, false, text);
    }
  });

  it("seals by default and when encrypt=true", () => {
    for (const text of ["redis://h/0", "redis://h/0?encrypt=true", "postgres://u@h/db?encrypt=%74rue"]) {
      const parsed = parseStoreUrl(text);
      assert.ok(parsed.kind !== "file");
      assert.equal(parsed.sealed, true, text);
    }
  });

  it("takes Tokenkeeper's own parameters out of the URL the driver gets", () => {
    const redis = parseStoreUrl("redis://:pw@h:6379/2?prefix=a%3Ab%3A&encrypt=false&family=6");
    assert.ok(redis.kind === "redis");
    assert.equal(redis.params.prefix, "a:b:");
    assert.equal(redis.driverUrl.href, "redis://:pw@h:6379/2?family=6");
    const pg = parseStoreUrl("postgresql://u@h/db?schema=tk&sslmode=require");
    assert.ok(pg.kind === "postgres");
    assert.equal(pg.params.schema, "tk");
    assert.equal(pg.encrypt, null);
    assert.equal(pg.driverUrl.href, "postgresql://u@h/db?sslmode=require");
  });

  it("turns a file URL into its directory", () => {
    assert.deepEqual(parseStoreUrl("file:///var/lib/tk"), { kind: "file", dir: "/var/lib/tk" });
    assert.deepEqual(parseStoreUrl("file:///var/lib/t%20k"), { kind: "file", dir: "/var/lib/t k" });
  });

  it("refuses bad URLs with a ConfigError that never echoes the URL", () => {
    for (const text of [
      "redis://:hunter2@h/0?encrypt=maybe",
      "mysql://u:hunter2@h/db",
      "file://relative/hunter2",
      "postgres://u:hunter2@[::1/db",
    ]) {
      assert.throws(
        () => parseStoreUrl(text),
        (e: unknown) => e instanceof ConfigError && !e.message.includes("hunter2"),
        text,
      );
    }
  });
});

describe("openStore reads the URL through the same parser", () => {
  it("opens ?encrypt=%66alse unsealed, with no key configured", async () => {
    const store = await openStore("redis://127.0.0.1:1/0?encrypt=%66alse", { env: {} });
    try {
      assert.ok("encrypted" in store && store.encrypted === false);
    } finally {
      await store.close();
    }
  });

  it("an explicit encrypt option wins over the URL", async () => {
    const store = await openStore("redis://127.0.0.1:1/0", { env: {}, encrypt: false });
    try {
      assert.ok("encrypted" in store && store.encrypted === false);
    } finally {
      await store.close();
    }
  });
});
