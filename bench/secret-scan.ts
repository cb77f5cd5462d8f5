/**
 * The suite-wide secret scan's cost (scripts/secret-scan.mjs): one rolling-hash pass over the
 * recorded outputs, against a baseline measured in the same run that looks for every issued
 * value with indexOf in every output (what a straightforward scan would do). Both must find the
 * same planted leaks.
 *
 *   npx tsx bench/secret-scan.ts [--values N] [--mb M]
 *
 * The outputs are JSON-RPC-like lines with long base64url runs (the worst case for the scan:
 * every character is in a run it must hash), with three planted leaks.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readIssued, readOutputs, scan } from "../scripts/secret-scan.mjs";
import { recordIssued, recordOutput, SCAN_ENV } from "../test/support/secret-scan.js";

const { values } = parseArgs({
  options: { values: { type: "string", default: "5000" }, mb: { type: "string", default: "10" } },
});
const count = Number(values.values);
const megabytes = Number(values.mb);

const dir = mkdtempSync(join(tmpdir(), "tk-bench-scan-"));
process.env[SCAN_ENV] = dir;
try {
  const issued: string[] = [];
  for (let i = 0; i < count; i++) {
    const value = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(30).toString("base64url")}`;
    issued.push(value);
    recordIssued("access_token", value);
  }
  const line = `{"jsonrpc":"2.0","result":{"content":[{"type":"text","text":"${randomBytes(3000).toString("base64url")}"}]}}\n`;
  const perOutput = line.repeat(Math.ceil(1_000_000 / line.length));
  for (let i = 0; i < megabytes; i++) {
    // Three outputs carry a planted leak (one issued value each).
    const leak = i < 3 ? `error: ${issued[i * 7]!}\n` : "";
    recordOutput(`bulk ${i}`, perOutput + leak);
  }

  let started = performance.now();
  const result = scan(dir);
  const scanMs = performance.now() - started;

  // Baseline: every value searched in every output with indexOf.
  started = performance.now();
  const all = [...readIssued(dir).keys()];
  let naiveHits = 0;
  let bytes = 0;
  for (const output of readOutputs(dir)) {
    bytes += output.text.length;
    for (const value of all) if (output.text.includes(value)) naiveHits++;
  }
  const naiveMs = performance.now() - started;

  console.log(`outputs: ${(bytes / 1e6).toFixed(1)} MB, issued values: ${count}`);
  console.log(`| scan | time | leaks found |`);
  console.log(`| --- | ---: | ---: |`);
  console.log(
    `| rolling hash (scripts/secret-scan.mjs) | ${Math.round(scanMs)} ms | ${result.hits.length} |`,
  );
  console.log(`| baseline: indexOf per value per output | ${Math.round(naiveMs)} ms | ${naiveHits} |`);
  if (result.hits.length !== 3 || naiveHits !== 3) {
    console.error("the planted leaks were not all found");
    process.exitCode = 1;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
