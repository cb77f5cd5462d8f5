/**
 * How a test starts a TypeScript entry point (the CLI, a race worker, a store fixture) as a
 * child process: bundled by esbuild (the compiler tsx itself uses) into one ES module, with
 * every package left to Node's own resolver, and run by plain `node`. Through the tsx loader
 * each start costs about 0.5 s of CPU, its hooks resolving and compiling every module again;
 * the race tests start 16 workers at once and the suite about 150 children, which on a busy
 * 2-core machine was the suite's biggest cost. The bundle is the same code: same sources, same
 * compiler, same packages. Tests about the entry itself (a symlinked bin, a path with spaces)
 * still start `src/cli/bin.ts` through tsx, as a user's checkout would.
 */
import { createHash } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
// Inside the repository, so that the bundle's bare imports resolve to its node_modules.
const OUT_DIR = join(REPO, "node_modules", ".cache", "tokenkeeper-test-entries");

const built = new Map<string, string>();

/**
 * The node arguments that run `entry` (a .ts file): `[...nodeArgs, ...entryArgs]`. Built once
 * per test process; the file is named by its content, so parallel test files share it and a
 * changed source gets a new one.
 */
export function nodeArgsFor(entry: string): string[] {
  let bundle = built.get(entry);
  if (!bundle) {
    const result = buildSync({
      absWorkingDir: REPO,
      entryPoints: [entry],
      bundle: true,
      packages: "external",
      format: "esm",
      platform: "node",
      target: "node20",
      // Stack traces in a child's stderr name the sources, not the bundle.
      sourcemap: "inline",
      write: false,
      logLevel: "warning",
    });
    const code = result.outputFiles[0]!.contents;
    const hash = createHash("sha256").update(code).digest("hex").slice(0, 16);
    bundle = join(OUT_DIR, `${basename(entry, ".ts")}-${hash}.mjs`);
    mkdirSync(OUT_DIR, { recursive: true });
    // Written whole, then renamed: a test file starting the same bundle meanwhile never sees half of it.
    const temp = `${bundle}.${process.pid}.tmp`;
    writeFileSync(temp, code);
    renameSync(temp, bundle);
    built.set(entry, bundle);
  }
  return ["--enable-source-maps", bundle];
}
