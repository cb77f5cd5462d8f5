// The suite-wide secret scan: looks for every secret value the test servers issued (exact values,
// recorded in ISSUED files) in every output the harnesses captured (OUTPUT files), and reports
// where each hit is, never the value. See test/support/secret-scan.ts for how both are recorded.
//
//   node scripts/secret-scan.mjs DIR     exit 0 clean, 1 leak(s) found, 2 unreadable records
//
// Cost: one pass over the outputs. Values are indexed by a rolling hash of their last 16
// characters, and only runs of characters that can occur in a value are looked at, so the scan
// is linear in the output size, whatever the number of values.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const KEY = 16;
/** Characters of every issued value (base64url, plus "." for JWTs). */
const RUN = /[A-Za-z0-9_.~+/=-]{16,}/g;

/** Reads the issued values of `dir`: a Map from value to its kind. */
export function readIssued(dir) {
  const values = new Map();
  for (const file of readdirSync(dir).filter((f) => f.startsWith("issued-"))) {
    for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
      const tab = line.indexOf("\t");
      if (tab > 0) values.set(line.slice(tab + 1), line.slice(0, tab));
    }
  }
  return values;
}

/** Parses the output records of `dir`: { label, allow: Set, text }. */
export function* readOutputs(dir) {
  for (const file of readdirSync(dir).filter((f) => f.startsWith("outputs-"))) {
    const buf = readFileSync(join(dir, file));
    let at = 0;
    while (at < buf.length) {
      const eol = buf.indexOf(10, at);
      const header = buf.toString("utf8", at, eol);
      const m = /^@@ (\d+) (\S+) (.*)$/.exec(header);
      if (eol < 0 || !m) throw new Error(`${file}: unreadable record at byte ${at}`);
      const length = Number(m[1]);
      const start = eol + 1;
      yield {
        label: m[3],
        allow: new Set(m[2] === "-" ? [] : m[2].split(",")),
        text: buf.toString("utf8", start, start + length),
      };
      at = start + length + 1;
    }
  }
}

const BASE = 257;
/** BASE^(KEY-1) mod 2^32, to drop a character from the rolling hash. */
const DROP = (() => {
  let p = 1;
  for (let i = 1; i < KEY; i++) p = Math.imul(p, BASE);
  return p;
})();

/** The polynomial hash (mod 2^32) of `s.slice(from, from + KEY)`. */
function hashAt(s, from) {
  let h = 0;
  for (let i = from; i < from + KEY; i++) h = (Math.imul(h, BASE) + s.charCodeAt(i)) | 0;
  return h;
}

/** Finds issued values in outputs. Returns { hits: [{ kind, label, offset }], values, outputs, bytes }. */
export function scan(dir) {
  const issued = readIssued(dir);
  // Indexed by a rolling hash of their last KEY characters (their random part: JWTs share a
  // header prefix); the text is hashed window by window, so each character costs O(1).
  const index = new Map();
  for (const value of issued.keys()) {
    const key = hashAt(value, value.length - KEY);
    const list = index.get(key);
    if (list) list.push(value);
    else index.set(key, [value]);
  }
  const hits = [];
  let outputs = 0;
  let bytes = 0;
  for (const { label, allow, text } of readOutputs(dir)) {
    outputs++;
    bytes += text.length;
    if (index.size === 0) continue;
    for (const run of text.matchAll(RUN)) {
      const s = run[0];
      let h = hashAt(s, 0);
      for (let end = KEY; ; end++) {
        const candidates = index.get(h);
        if (candidates) {
          for (const value of candidates) {
            if (value.length > end || s.slice(end - value.length, end) !== value) continue;
            const kind = issued.get(value);
            if (!allow.has(kind)) hits.push({ kind, label, offset: run.index + end - value.length });
          }
        }
        if (end === s.length) break;
        h = (Math.imul(h - Math.imul(s.charCodeAt(end - KEY), DROP), BASE) + s.charCodeAt(end)) | 0;
      }
    }
  }
  return { hits, values: issued.size, outputs, bytes };
}

/** Prints the outcome; returns the exit code (0 clean, 1 leak). */
export function report(dir, log = console.error) {
  const started = performance.now();
  const result = scan(dir);
  const ms = Math.round(performance.now() - started);
  const summary = `${result.values} issued secret values, ${result.outputs} outputs (${(result.bytes / 1e6).toFixed(1)} MB), ${ms} ms`;
  if (result.hits.length === 0) {
    log(`secret scan: no leak (${summary})`);
    return 0;
  }
  log(`secret scan: ${result.hits.length} LEAK(S) of issued secrets (${summary}):`);
  for (const h of result.hits.slice(0, 50)) log(`  ${h.kind} in ${h.label} at character ${h.offset}`);
  if (result.hits.length > 50) log(`  … and ${result.hits.length - 50} more`);
  return 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node scripts/secret-scan.mjs DIR");
    process.exit(2);
  }
  try {
    process.exit(report(dir));
  } catch (error) {
    console.error(`secret scan: ${error.message}`);
    process.exit(2);
  }
}
