// Finds every *.test.ts under the given folders (default: src and test) and runs them
// with Node's built-in test runner through the tsx loader. A script, not a shell glob,
// because npm runs scripts with sh, where ** is not recursive.
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { report } from "./secret-scan.mjs";

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith("--"));
const roots = args.filter((a) => !a.startsWith("--"));

function collect(path, out) {
  if (statSync(path).isFile()) {
    if (path.endsWith(".test.ts")) out.push(path);
    return out;
  }
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    collect(join(path, entry.name), out);
  }
  return out;
}

/** The header comment (first 2 KB) of a test file, where `@slow` and `@long` are said. */
function header(path) {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(2048);
    return head.toString("utf8", 0, readSync(fd, head, 0, head.length, 0));
  } finally {
    closeSync(fd);
  }
}

// Two lanes. `@long` files (the soak runs: one call a second for tens of seconds, almost no CPU)
// run in a lane of their own, all at once, beside the rest: in the main lane they would hold a
// worker each for their whole length while it mostly sleeps. In the main lane, `@slow` files
// (tens of seconds of real work) start first, so that none of them starts last and runs alone.
const all = (roots.length ? roots : ["src", "test"]).flatMap((r) => collect(r, [])).sort();
if (all.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
const headers = new Map(all.map((f) => [f, header(f)]));
const long = all.filter((f) => headers.get(f).includes("@long"));
const rest = all.filter((f) => !long.includes(f));
const slow = rest.filter((f) => headers.get(f).includes("@slow"));
const main = [...slow, ...rest.filter((f) => !slow.includes(f))];

// The secret scan (scripts/secret-scan.mjs): test servers record the secrets they issue, and
// harnesses the outputs they capture, into a private directory outside the repository for this
// run only; after the tests, any issued value found in any output fails the run.
const scanDir = mkdtempSync(join(tmpdir(), "tokenkeeper-secret-scan-"));
// Main-lane files run in parallel processes. Most of their time is spent waiting on real servers
// and real timers, not on the CPU, so a few more than the cores keeps both busy.
const concurrency = Number(process.env.TOKENKEEPER_TEST_CONCURRENCY ?? 3);

/**
 * Runs one lane under Node's test runner. The main lane's TAP streams to stdout as it comes;
 * the long lane's is held and printed whole when both are done, so the two never interleave.
 */
function runLane(files, laneConcurrency, stream) {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--test",
      `--test-concurrency=${laneConcurrency}`,
      "--test-timeout=300000",
      ...flags,
      ...files,
    ],
    {
      stdio: ["inherit", "pipe", "inherit"],
      env: { ...process.env, TOKENKEEPER_TEST_SECRET_SCAN: scanDir },
    },
  );
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
    if (stream) process.stdout.write(chunk);
  });
  const done = new Promise((resolve) => {
    child.on("close", (code, signal) => resolve({ code: signal ? 1 : (code ?? 1), output }));
  });
  return { child, done };
}

/** The totals at the end of a lane's TAP output (`# tests 12`, `# pass 12`, ...). */
function totals(output) {
  const counts = {};
  for (const [, key, value] of output.matchAll(/^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) {
    counts[key] = Number(value);
  }
  return counts;
}

const lanes = [];
if (main.length > 0) lanes.push(runLane(main, concurrency, true));
if (long.length > 0) lanes.push(runLane(long, long.length, main.length === 0));
// Ctrl-C reaches the test runners too (same process group): wait for them to stop, then clean
// up the scan directory instead of dying first and leaving it behind.
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    for (const lane of lanes) lane.child.kill(sig);
  });
}

const results = await Promise.all(lanes.map((l) => l.done));
if (lanes.length > 1) {
  process.stdout.write(`# --- the long lane (${long.length} files, run beside the rest) ---\n`);
  process.stdout.write(results[1].output);
  const sum = {};
  for (const r of results) for (const [k, v] of Object.entries(totals(r.output))) sum[k] = (sum[k] ?? 0) + v;
  console.log(
    `# both lanes: ${Object.entries(sum)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  );
}
let scanCode = 0;
try {
  scanCode = report(scanDir);
} catch (error) {
  console.error(`secret scan: ${error.message}`);
  scanCode = 2;
} finally {
  rmSync(scanDir, { recursive: true, force: true });
}
// exitCode, not exit(): the held output above may still be flushing to a pipe (asynchronous on macOS).
process.exitCode = results.find((r) => r.code !== 0)?.code || scanCode;
