/**
 * Layers point one way (cli -> surfaces -> manager -> oauth/store -> core), and `npm run lint`
 * enforces it: biome.json's noRestrictedImports overrides fail an upward import. Checked by
 * linting probe files laid out like src/ with the project's own biome.json.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, it } from "node:test";

const REPO = resolve(import.meta.dirname, "..", "..");
const BIOME = join(REPO, "node_modules", ".bin", "biome");
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Diagnostic {
  category: string;
  location: { path: string };
}

/** Lints `files` (path under src/ -> text) with the project's rules; the layer diagnostics by file. */
async function lintLayers(files: Record<string, string>): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "tk-layers-"));
  dirs.push(dir);
  const config = JSON.parse(await readFile(join(REPO, "biome.json"), "utf8")) as Record<string, unknown>;
  delete config.$schema;
  await writeFile(join(dir, "biome.json"), JSON.stringify(config));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  const r = spawnSync(BIOME, ["lint", "--reporter=json", "."], {
    cwd: dir,
    encoding: "utf8",
    timeout: 60_000,
  });
  const report = JSON.parse(r.stdout) as { diagnostics: Diagnostic[] };
  return report.diagnostics
    .filter((d) => d.category === "lint/style/noRestrictedImports")
    .map((d) => d.location.path)
    .sort();
}

describe("layer direction", () => {
  it("fails an import that points up a layer, and allows every downward one", async () => {
    const flagged = await lintLayers({
      "src/core/up.ts": 'export { TokenManager } from "../manager/token-manager.js";\n',
      "src/store/up.ts": 'export { discover } from "../oauth/discovery.js";\n',
      "src/oauth/up.ts": 'export { createAuthFetch } from "../surfaces/auth-fetch.js";\n',
      "src/manager/up.ts": 'export { runProxy } from "../surfaces/proxy/proxy.js";\n',
      "src/surfaces/proxy/up.ts": 'export { writeLine } from "../../cli/output.js";\n',
      "src/cli/down.ts": 'export { runProxy } from "../surfaces/proxy/proxy.js";\n',
      "src/surfaces/proxy/down.ts": 'export { TokenManager } from "../../manager/token-manager.js";\n',
      "src/manager/down.ts": 'export { openStore } from "../store/open-store.js";\n',
      "src/oauth/down.ts": 'export type { Store } from "../store/types.js";\n',
      "src/store/down.ts": 'export { EXIT } from "../core/errors.js";\n',
    });
    assert.deepEqual(flagged, [
      "src/core/up.ts",
      "src/manager/up.ts",
      "src/oauth/up.ts",
      "src/store/up.ts",
      "src/surfaces/proxy/up.ts",
    ]);
  });
});
