/**
 * The fast path of `token`/`headers` (src/cli/fast-token.ts) answers only what the full CLI
 * would answer the same way, and steps aside for everything else. Each case runs three ways and
 * must agree: the fast path's own decision, the full CLI in-process (main(), which never takes
 * the fast path), and the executable bundled exactly as the build bundles it (one CommonJS file,
 * scripts/bundle-bin.mjs) as a child process: same stdout, same exit code.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { binBuildOptions } from "../../scripts/bundle-bin.mjs";
import { fastAnswer } from "../../src/cli/fast-token.js";
import { ManualClock } from "../../src/core/clock.js";
import { updateRecord } from "../../src/store/update.js";
import { recordCliRun } from "../support/secret-scan.js";
import { type CliResult, type Harness, startHarness } from "./unattended-harness.js";

const CLI_SOURCE = pathToFileURL(fileURLToPath(new URL("../../src/cli/cli.ts", import.meta.url))).href;

describe("token/headers fast path", () => {
  let h: Harness;
  let bundleDir: string;
  let bundle: string;

  before(async () => {
    h = await startHarness({ accessTokenTtl: 3_600 });
    await h.connect("svc");
    bundleDir = await mkdtemp(join(tmpdir(), "tk-fast-bundle-"));
    bundle = join(bundleDir, "bin.cjs");
    // The build's bundle, except that its fallback loads the full CLI from the sources (tsx).
    await build(
      binBuildOptions({
        outfile: bundle,
        plugins: [
          {
            name: "cli-from-source",
            setup(b) {
              b.onResolve({ filter: /^\.\/cli\.js$/ }, () => ({ path: CLI_SOURCE, external: true }));
            },
          },
        ],
      }),
    );
  });
  after(async () => {
    await h.close();
    await rm(bundleDir, { recursive: true, force: true });
  });

  function runBundle(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    const child = spawn(process.execPath, ["--import", "tsx", bundle, ...argv], {
      env: { ...h.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    return new Promise((resolve) =>
      child.on("close", (code) => {
        recordCliRun(argv, stdout, stderr, "child-process");
        resolve({ code: code ?? -1, stdout, stderr, lines: [] });
      }),
    );
  }

  /** The three ways agree; returns the full CLI's result. */
  async function agree(argv: string[], { fast }: { fast: boolean }): Promise<CliResult> {
    const answer = fastAnswer(argv, h.env);
    const full = await h.cli(argv);
    const exe = await runBundle(argv);
    if (fast) assert.equal(answer, full.stdout, "the fast path prints what the full CLI prints");
    else assert.equal(answer, null, "the fast path steps aside");
    assert.equal(exe.code, full.code, exe.stderr);
    assert.equal(exe.stdout, full.stdout);
    assert.equal(exe.stderr, full.stderr);
    return full;
  }

  it("a fresh token: token, token --json and headers print the same bytes, exit 0, no network", async () => {
    const tokenRequests = h.bed.as.counters.tokenRequests;
    for (const argv of [
      ["token", "svc"],
      ["token", "svc", "--json"],
      ["token", "--json", "svc"],
      ["headers", "svc"],
    ]) {
      const r = await agree(argv, { fast: true });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
    }
    const stored = (await h.store.get("svc"))!.record.tokens!;
    assert.equal(fastAnswer(["token", "svc"], h.env), `${stored.accessToken.reveal()}\n`);
    assert.equal(h.bed.as.counters.tokenRequests, tokenRequests, "no refresh was asked for");
  });

  it("a stale token: the fast path steps aside and the full CLI refreshes it", async () => {
    await h.connect("stale");
    for (const run of [(argv: string[]) => h.cli(argv), (argv: string[]) => runBundle(argv)]) {
      await updateRecord(h.store, "stale", (rec) => ({
        ...rec,
        tokens: { ...rec.tokens!, expiresAt: Date.now() - 1_000, obtainedAt: Date.now() - 3_601_000 },
      }));
      assert.equal(fastAnswer(["token", "stale"], h.env), null);
      const requests = h.bed.as.counters.tokenRequests;
      const r = await run(["token", "stale"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${(await h.store.get("stale"))!.record.tokens!.accessToken.reveal()}\n`);
      assert.equal(h.bed.as.counters.tokenRequests, requests + 1);
    }
  });

  it("a grant that needs a human (reauth_required, token time left): 77 both ways", async () => {
    await h.connect("gone");
    await updateRecord(h.store, "gone", (rec) => ({
      ...rec,
      state: {
        ...rec.state,
        health: "reauth_required",
        reauth: { reason: "invalid_grant", since: Date.now(), action: "tokenkeeper login" },
      },
    }));
    assert.equal((await agree(["token", "gone"], { fast: false })).code, 77);
    assert.equal((await agree(["headers", "gone"], { fast: false })).code, 77);
  });

  it("a missing connector, a bad name, a bad flag: 78 both ways", async () => {
    assert.equal((await agree(["token", "nobody"], { fast: false })).code, 78);
    assert.equal((await agree(["headers", "nobody"], { fast: false })).code, 78);
    assert.equal((await agree(["token", "../svc"], { fast: false })).code, 78);
    assert.equal((await agree(["token", "svc", "--min-ttl", "later"], { fast: false })).code, 78);
    assert.equal((await agree(["token", "svc", "svc"], { fast: false })).code, 78);
  });

  it("a corrupt token file: the fast path steps aside, the full CLI reports it (74) and moves it aside", async () => {
    const connectors = join(h.home, "state", "connectors");
    for (const run of [(argv: string[]) => h.cli(argv), (argv: string[]) => runBundle(argv)]) {
      await writeFile(join(connectors, "broken.json"), '{"version": 1, "record": {', { mode: 0o600 });
      assert.equal(fastAnswer(["token", "broken"], h.env), null);
      const r = await run(["token", "broken"]);
      assert.equal(r.code, 74, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /store_corrupt/);
      assert.ok((await readdir(connectors)).some((f) => f.startsWith("broken.json.corrupt-")));
    }
  });

  it("a token file open to others, or a symlink: refused (74) both ways, nothing printed", async () => {
    await h.connect("open");
    const file = join(h.home, "state", "connectors", "open.json");
    await chmod(file, 0o644);
    try {
      const r = await agree(["token", "open"], { fast: false });
      assert.equal(r.code, 74);
      assert.match(r.stderr, /chmod 600/);
    } finally {
      await chmod(file, 0o600);
    }
    await symlink(file, join(h.home, "state", "connectors", "linked.json"));
    assert.equal((await agree(["token", "linked"], { fast: false })).code, 74);
    assert.equal(fastAnswer(["token", "open"], h.env) !== null, true, "the same file, private again");
  });

  it("steps aside for anything but a plain call on the file store", async () => {
    const plain = fastAnswer(["token", "svc"], h.env);
    assert.notEqual(plain, null);
    assert.equal(fastAnswer(["token", "svc", "--min-ttl", "1s"], h.env), null);
    assert.equal(fastAnswer(["token", "svc", "--rejected"], h.env), null);
    assert.equal(fastAnswer(["token", "svc", "--help"], h.env), null);
    assert.equal(fastAnswer(["token", "svc", "--json", "--json"], h.env), null);
    assert.equal(fastAnswer(["token", "svc", "--", "x"], h.env), null);
    assert.equal(fastAnswer(["status"], h.env), null);
    assert.equal(
      fastAnswer(["token", "svc"], { ...h.env, TOKENKEEPER_RUN_URL: "http://127.0.0.1:1/" }),
      null,
    );
    assert.equal(
      fastAnswer(["token", "svc"], { ...h.env, TOKENKEEPER_STORE: "redis://127.0.0.1:6379/0" }),
      null,
    );
    // The same decision as the manager's, by the injected clock: a day later the token is stale.
    assert.equal(fastAnswer(["token", "svc"], h.env, new ManualClock(Date.now() + 86_400_000)), null);
  });

  it("reads without writing: no locks directory created, no temp file swept", async () => {
    const home = await mkdtemp(join(tmpdir(), "tk-fast-ro-"));
    try {
      const state = join(home, "state");
      const env = { ...h.env, TOKENKEEPER_STORE: pathToFileURL(state).href };
      // A copy of the store without its locks directory, holding a dead writer's old temp file.
      const { cp, utimes } = await import("node:fs/promises");
      await cp(join(h.home, "state", "connectors"), join(state, "connectors"), { recursive: true });
      await chmod(state, 0o700);
      const temp = join(state, "connectors", ".svc.json.999999-dead.tmp");
      await writeFile(temp, "x", { mode: 0o600 });
      await utimes(temp, new Date(0), new Date(0));
      assert.notEqual(fastAnswer(["token", "svc"], env), null);
      assert.deepEqual((await readdir(state)).sort(), ["connectors"]);
      assert.ok((await readdir(join(state, "connectors"))).includes(".svc.json.999999-dead.tmp"));
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
