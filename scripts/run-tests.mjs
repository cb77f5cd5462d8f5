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

/** A file whose header comment says `@slow` runs for tens of seconds of real time. */
function isSlow(path) {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(2048);
    return head.toString("utf8", 0, readSync(fd, head, 0, head.length, 0)).includes("@slow");
  } finally {
    closeSync(fd);
  }
}

// Slow files start first: with two workers, a long file started last would run alone at the end.
const all = (roots.length ? roots : ["src", "test"]).flatMap((r) => collect(r, [])).sort();
const slow = new Set(all.filter(isSlow));
const files = [...slow, ...all.filter((f) => !slow.has(f))];
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
// The secret scan (scripts/secret-scan.mjs): test servers record the secrets they issue, and
// harnesses the outputs they capture, into a private directory outside the repository for this
// run only; after the tests, any issued value found in any output fails the run.
const scanDir = mkdtempSync(join(tmpdir(), "tokenkeeper-secret-scan-"));
// Files run in parallel processes. Most of their time is spent waiting on real servers and
// real timers, not on the CPU, so a few more than the cores keeps both busy.
const concurrency = Number(process.env.TOKENKEEPER_TEST_CONCURRENCY ?? 3);
const child = spawn(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-timeout=300000",
    ...flags,
    ...files,
  ],
  { stdio: "inherit", env: { ...process.env, TOKENKEEPER_TEST_SECRET_SCAN: scanDir } },
);
// Ctrl-C reaches the test runner too (same process group): wait for it to stop, then clean up
// the scan directory instead of dying first and leaving it behind.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => {
  let scanCode = 0;
  try {
    scanCode = report(scanDir);
  } catch (error) {
    console.error(`secret scan: ${error.message}`);
    scanCode = 2;
  } finally {
    rmSync(scanDir, { recursive: true, force: true });
  }
  process.exit(signal ? 1 : code || scanCode);
});
