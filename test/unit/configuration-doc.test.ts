/** docs/configuration.md documents every environment variable the code reads and every setting. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SETTINGS } from "../../src/manager/settings.js";

function sources(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (path.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("docs/configuration.md", () => {
  const doc = readFileSync("docs/configuration.md", "utf8");

  it("names every TOKENKEEPER_* variable in the source", () => {
    const names = new Set<string>();
    for (const file of sources("src"))
      for (const m of readFileSync(file, "utf8").matchAll(/\bTOKENKEEPER_[A-Z_]*[A-Z]\b/g)) names.add(m[0]);
    assert.ok(names.size >= 10);
    const missing = [...names].filter((n) => !doc.includes(`\`${n}\``));
    assert.deepEqual(missing, []);
  });

  it("documents every connector setting `config` accepts", () => {
    for (const s of SETTINGS) assert.ok(doc.includes(`| \`${s.key}\` |`), s.key);
    assert.ok(doc.includes("`header.NAME`"));
  });
});
