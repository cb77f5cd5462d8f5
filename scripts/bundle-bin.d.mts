// Types for scripts/bundle-bin.mjs (a plain script, run by `npm run build` without a loader).
import type { BuildOptions, Plugin } from "esbuild";
export function binBuildOptions(options?: { outfile?: string; plugins?: Plugin[] }): BuildOptions;
