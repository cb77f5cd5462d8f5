/**
 * `npm run bench`: every benchmark in turn, each printing its own table and its baseline.
 * Separate processes, so one benchmark's heap and open handles cannot colour the next.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const scripts = [
  "cli-startup.ts",
  "hot-path.ts",
  "fleet.ts",
  "save-window.ts",
  "proxy-vs-mcp-remote.ts",
  "secret-scan.ts",
];
let failed = 0;
for (const script of scripts) {
  console.log(`\n=== bench/${script} ===`);
  const path = fileURLToPath(new URL(script, import.meta.url));
  const result = spawnSync(process.execPath, ["--import", "tsx", path], { stdio: "inherit" });
  if (result.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
