// Build step after tsc: writes dist/src/cli/bin.cjs, the package's executable: src/cli/bin.ts
// and the fast path of `token`/`headers` (src/cli/fast-token.ts) with every module it imports,
// in one CommonJS file. Node 20 spends most of such a call starting its ES module loader and
// resolving and loading module files; a single CommonJS file needs neither. The full CLI
// (cli.js) stays tsc's ES module output, imported only when the fast path steps aside.
// Behaviour does not change: it is the same code tsc compiles (run from the sources, bin.ts
// does the same thing, only with more files to load).
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const repo = fileURLToPath(new URL("..", import.meta.url));

/** esbuild's options for the executable; tests bundle it the same way, elsewhere. */
export function binBuildOptions({ outfile = "dist/src/cli/bin.cjs", plugins = [] } = {}) {
  return {
    absWorkingDir: repo,
    entryPoints: ["src/cli/bin.ts"],
    outfile,
    bundle: true,
    // The full CLI is loaded from its own files (ES modules, by import()), and only when needed.
    external: ["./cli.js"],
    plugins,
    format: "cjs",
    platform: "node",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await build(binBuildOptions());
}
