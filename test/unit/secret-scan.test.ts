/**
 * The suite-wide secret scan itself: a planted leak of an exact issued value is caught in every
 * kind of recorded output and reported by place, never by value; an output that carries a value
 * by design (`tokenkeeper token`'s stdout) is not flagged; and it stays cheap.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { report, scan } from "../../scripts/secret-scan.mjs";
import {
  recordCliRun,
  recordIssued,
  recordIssuedInBody,
  recordIssuedInLocation,
  recordOutput,
  recordOutputFiles,
  SCAN_ENV,
} from "../support/secret-scan.js";

const SCANNER = fileURLToPath(new URL("../../scripts/secret-scan.mjs", import.meta.url));
const secret = (prefix: string) => `${prefix}${randomBytes(24).toString("base64url")}`;

describe("the secret scan", () => {
  // This file records into its own directory: its planted leaks must not fail the real run.
  let dir: string;
  const saved = process.env[SCAN_ENV];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tk-scan-test-"));
    process.env[SCAN_ENV] = dir;
  });
  after(() => {
    if (saved === undefined) delete process.env[SCAN_ENV];
    else process.env[SCAN_ENV] = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it("catches a planted leak in stderr, a file and a webhook body, by place and kind, never printing the value", async () => {
    const refresh = secret("rt-");
    const code = secret("");
    const access = secret("eyJhbGciOiJSUzI1NiJ9.");
    const clientSecret = secret("cs-");
    recordIssuedInBody({ access_token: access, refresh_token: refresh, token_type: "Bearer" });
    recordIssuedInLocation(`http://127.0.0.1:5555/callback?code=${code}&state=s`);
    recordIssued("client_secret", clientSecret);

    // Clean outputs, and one that carries an access token by design.
    recordCliRun(["status", "--json"], '{"connectors":[]}', "", "in-process");
    recordCliRun(["token", "x"], `${access}\n`, "", "in-process");
    // The planted leaks: inside a sentence, at the end of one, and in JSON.
    recordCliRun(
      ["ensure", "x"],
      "",
      `tokenkeeper: refresh failed (server said: bad token ${refresh}).\n`,
      "in-process",
    );
    const home = join(dir, "home");
    mkdirSync(join(home, "state"), { recursive: true });
    writeFileSync(join(home, "events.jsonl"), `{"type":"x","detail":"code=${code}"}\n`);
    writeFileSync(join(home, "state", "store.json"), JSON.stringify({ refresh }), { mode: 0o600 });
    recordOutputFiles(home, ["state"]);
    recordOutput("webhook body /hook", JSON.stringify({ note: `secret ${clientSecret}`, at: access }));

    const result = scan(dir);
    assert.equal(result.values, 4);
    const found = result.hits.map((h) => `${h.kind} @ ${h.label}`).sort();
    assert.deepEqual(found, [
      "access_token @ secret-scan.test.ts: webhook body /hook",
      "authorization_code @ secret-scan.test.ts: file events.jsonl",
      "client_secret @ secret-scan.test.ts: webhook body /hook",
      "refresh_token @ secret-scan.test.ts: in-process `tokenkeeper ensure` stderr",
    ]);
    // The token store (state/) is not an output; `token`'s stdout may carry the access token.
    assert.ok(
      !result.hits.some((h) => h.label.includes("store.json") || h.label.includes("`tokenkeeper token`")),
    );

    const lines: string[] = [];
    assert.equal(
      report(dir, (l) => lines.push(l)),
      1,
    );
    const printed = lines.join("\n");
    assert.match(printed, /4 LEAK\(S\)/);
    for (const value of [refresh, code, access, clientSecret]) assert.ok(!printed.includes(value));

    // The same from the command line, as scripts/run-tests.mjs reports it: exit 1.
    const cli = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [SCANNER, dir], (error, _out, stderr) =>
        resolve({ code: error ? Number(error.code) : 0, stderr }),
      ),
    );
    assert.equal(cli.code, 1);
    assert.match(
      cli.stderr,
      /refresh_token in secret-scan\.test\.ts: in-process `tokenkeeper ensure` stderr/,
    );
    assert.ok(!cli.stderr.includes(refresh));
    // Recorded privately.
    for (const f of ["issued", "outputs"]) {
      const file = join(dir, `${f}-${process.pid}.${f === "issued" ? "tsv" : "log"}`);
      assert.equal(statSync(file).mode & 0o777, 0o600);
    }
  });

  it("is linear in the output: 20 MB against 20,000 issued values in well under the suite's budget", () => {
    const big = mkdtempSync(join(tmpdir(), "tk-scan-big-"));
    try {
      process.env[SCAN_ENV] = big;
      for (let i = 0; i < 20_000; i++)
        recordIssued("access_token", `eyJhbGciOiJSUzI1NiJ9.${randomBytes(30).toString("base64url")}`);
      const chunk = `{"jsonrpc":"2.0","result":{"content":[{"type":"text","text":"${randomBytes(3000).toString("base64url")}"}]}}\n`;
      for (let i = 0; i < 5; i++)
        recordOutput(`bulk ${i}`, chunk.repeat(Math.ceil(4_000_000 / chunk.length)));
      const started = performance.now();
      const result = scan(big);
      const ms = performance.now() - started;
      assert.equal(result.hits.length, 0);
      assert.ok(result.bytes >= 20_000_000);
      assert.ok(ms < 15_000, `scanned ${result.bytes} bytes in ${Math.round(ms)} ms`);
    } finally {
      process.env[SCAN_ENV] = dir;
      rmSync(big, { recursive: true, force: true });
    }
  });
});
