/**
 * Cron and systemd as docs/clients.md writes them: a keepalive pass that is silent when all is
 * well and speaks (and exits 77/75) when not, `status --check`/`--quiet`, and the documented
 * crontab command run the way cron runs it: `sh -c`, a bare environment, PATH=/usr/bin:/bin.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { shellQuote } from "../../src/surfaces/proxy/config.js";
import { type Harness, MAIN, startHarness } from "./unattended-harness.js";

/** The absolute command line the docs tell users to write (node, then the script). */
const TOKENKEEPER = [process.execPath, "--import", import.meta.resolve("tsx"), MAIN]
  .map(shellQuote)
  .join(" ");

function cronShell(line: string, env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    // What cron gives a job: sh, HOME, LOGNAME, SHELL and PATH=/usr/bin:/bin, plus the crontab's variables.
    execFile(
      "/bin/sh",
      ["-c", line],
      { env: { PATH: "/usr/bin:/bin", SHELL: "/bin/sh", ...env }, timeout: 120_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

describe("cron and systemd recipes", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 600 });
    await h.connect("ok1");
    await h.connect("ok2");
    await sleep(1_100); // idle for --idle 1s
  });
  after(async () => {
    await h.close();
  });

  it("keepalive --once is silent when every connector is fine, even after refreshing one", async () => {
    const grants = h.bed.as.counters.tokenRequests;
    const r = await h.cli(["keepalive", "--once", "--idle", "1s"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "");
    assert.ok(h.bed.as.counters.tokenRequests > grants, "it did refresh");
    const verbose = await h.cli(["keepalive", "--once", "--verbose"]);
    assert.match(verbose.stdout, /ok1: ready/);
  });

  it("status --check and --quiet: 0 and no output while healthy", async () => {
    assert.equal((await h.cli(["status", "--check"])).code, 0);
    const quiet = await h.cli(["status", "--quiet"]);
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stdout, "");
  });

  it("the crontab line from the docs runs under cron's PATH, silent on success", async () => {
    const line = `TOKENKEEPER_STORE=${shellQuote(h.storeUrl)} ${TOKENKEEPER} keepalive --once`;
    const r = await cronShell(line, { HOME: h.home, LOGNAME: "tk" });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, "");
    // The mistake the docs warn about: a bare `tokenkeeper` is not on cron's PATH.
    const bare = await cronShell("tokenkeeper keepalive --once", { HOME: h.home });
    assert.equal(bare.code, 127);
  });

  it("when a grant is revoked: keepalive --once prints the connector and exits 77; status --check 77, --quiet names only it", async () => {
    await h.connect("dead");
    await h.bed.as.revokeGrantOf((await h.store.get("dead"))!.record.tokens!.refreshToken!.reveal());
    await sleep(1_100);
    const r = await h.cli(["keepalive", "--once", "--idle", "1s"]);
    assert.equal(r.code, 77);
    assert.match(r.stdout, /dead: skipped/);
    assert.doesNotMatch(r.stdout, /ok1|ok2/);
    assert.equal((await h.cli(["status", "--check"])).code, 77);
    assert.equal((await h.cli(["status"])).code, 0, "without --check, status only reports");
    const quiet = await h.cli(["status", "--quiet"]);
    assert.equal(quiet.code, 77);
    assert.match(quiet.stdout, /^dead {2}\[reauth_required\]/);
    assert.doesNotMatch(quiet.stdout, /ok1|ok2|store:/);
  });
});
