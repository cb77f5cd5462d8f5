import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  exports: Record<string, string | { types: string; default: string }>;
  bin: Record<string, string>;
};

describe("package entry points", () => {
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === "string") continue;
    it(`${subpath} loads and exports something`, async () => {
      const source = target.default.replace(/^\.\/dist\//, "../../").replace(/\.js$/, ".ts");
      const mod = (await import(source)) as Record<string, unknown>;
      assert.ok(Object.keys(mod).length > 0);
    });
  }

  it("the main entry exposes the manager, stores, errors and surfaces", async () => {
    const mod = await import("../../src/index.js");
    for (const name of [
      "TokenManager",
      "FileStore",
      "MemoryStore",
      "openStore",
      "ReauthRequiredError",
      "createAuthFetch",
      "skipRecordSchema",
      "login",
    ]) {
      assert.ok(name in mod, `missing export ${name}`);
    }
  });

  it("--version reports the package's version", async () => {
    const { VERSION } = await import("../../src/cli/version.js");
    const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    assert.equal(VERSION, version);
  });

  it("the tokenkeeper bin points at the CLI executable", () => {
    // One CommonJS file bundled from src/cli/bin.ts by the build (scripts/bundle-bin.mjs).
    assert.equal(pkg.bin.tokenkeeper, "./dist/src/cli/bin.cjs");
    assert.match((pkg as unknown as { scripts: { build: string } }).scripts.build, /bundle-bin\.mjs/);
  });
});
