/**
 * CLI startup: wall time of `tokenkeeper token NAME` and `tokenkeeper headers NAME` (a fresh
 * token in a file store, no network) against `node -e 0`, measured in the same run, the runs
 * interleaved so machine load falls on both alike. Runs the built CLI (dist/) through the file
 * the package's `bin` names, what users run: it builds first unless --no-build. The goal: token at
 * most 1.5× node -e 0 (median). `token`/`headers` with a fresh token take the bundled fast path
 * (src/cli/fast-token.ts); `status` shows what a command loading the full CLI costs.
 *
 *   npx tsx bench/cli-startup.ts [--runs N] [--no-build] [--check]
 *
 * --check exits 1 when the goal is missed.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { systemClock } from "../src/core/clock.js";
import { openStore } from "../src/store/open-store.js";
import { startTestBed } from "../test/bed/index.js";
import { connectTestBed } from "../test/support/connect.js";
import { summarize } from "./lib/latency-stats.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "30" },
    "no-build": { type: "boolean", default: false },
    check: { type: "boolean", default: false },
  },
});
const runs = Number(values.runs);
const REPO = fileURLToPath(new URL("..", import.meta.url));
// The file npm links as `tokenkeeper`: the package's own `bin`, whatever it names.
const BIN = join(
  REPO,
  (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { bin: { tokenkeeper: string } }).bin
    .tokenkeeper,
);
const GOAL = 1.5;

if (!values["no-build"]) {
  const build = spawnSync("npm", ["run", "build"], { cwd: REPO, stdio: "inherit" });
  if (build.status !== 0) throw new Error("build failed");
}

const home = await mkdtemp(join(tmpdir(), "tk-startup-"));
const storeUrl = pathToFileURL(join(home, "state")).href;
const env = { PATH: process.env.PATH, HOME: home, TOKENKEEPER_STORE: storeUrl };
{
  // A connector with a day-long token: every call below finds it fresh and never needs the server.
  const bed = await startTestBed({ accessTokenTtl: 86_400 });
  const store = await openStore(storeUrl, { env, clock: systemClock });
  await connectTestBed(bed, store, "bench");
  await store.close();
  await bed.close();
}

const cases: { label: string; args: string[] }[] = [
  { label: "baseline: node -e 0", args: ["-e", "0"] },
  { label: "tokenkeeper token bench", args: [BIN, "token", "bench"] },
  { label: "tokenkeeper headers bench", args: [BIN, "headers", "bench"] },
  // The same fast path unbundled: tsc's ES-module output, ~15 module files (what bundling saves).
  { label: "token bench, unbundled ES modules", args: [join(REPO, "dist/src/cli/bin.js"), "token", "bench"] },
  { label: "tokenkeeper --version", args: [BIN, "--version"] },
  { label: "tokenkeeper status (reads the store)", args: [BIN, "status"] },
];

const samples = new Map<string, number[]>(cases.map((c) => [c.label, []]));
function once(c: (typeof cases)[number]): void {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, c.args, { env, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${c.label} exited ${r.status}: ${r.stderr}`);
  samples.get(c.label)!.push(ms);
}
for (const c of cases) once(c); // warm the file cache
for (let i = 0; i < runs; i++) for (const c of cases) once(c);
await rm(home, { recursive: true, force: true });

const base = summarize(samples.get(cases[0]!.label)!).p50;
console.log(
  `CLI startup, ${runs} interleaved runs each (wall ms; ratio = median / median of node -e 0); ` +
    `load average ${loadavg()[0]!.toFixed(1)}, executable ${BIN.slice(REPO.length)}`,
);
console.log(`${"".padEnd(40)} ${"p50".padStart(8)} ${"p99".padStart(8)} ${"ratio".padStart(7)}`);
let tokenRatio = 0;
for (const c of cases) {
  const s = summarize(samples.get(c.label)!);
  const ratio = s.p50 / base;
  if (c.label.startsWith("tokenkeeper token")) tokenRatio = ratio;
  console.log(
    `${c.label.padEnd(40)} ${s.p50.toFixed(1).padStart(8)} ${s.p99.toFixed(1).padStart(8)} ${ratio.toFixed(2).padStart(6)}×`,
  );
}
const ok = tokenRatio <= GOAL;
console.log(`goal: token ≤ ${GOAL}× node -e 0 — ${ok ? "met" : "MISSED"} (${tokenRatio.toFixed(2)}×)`);
if (values.check && !ok) process.exitCode = 1;
