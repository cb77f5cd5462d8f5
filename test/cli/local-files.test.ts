/**
 * Local paths a command is pointed at, treated as untrusted: the events log and --skip-file
 * never follow a symlink and never keep a loose mode; TOKENKEEPER_HOME naming a regular file is
 * a clear store error (74), not a crash; `status` reports a damaged record without moving it.
 */
import assert from "node:assert/strict";
import {
  chmodSync,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Harness, startHarness } from "./unattended-harness.js";

const mode = (path: string) => statSync(path).mode & 0o777;

describe("files a command appends to, and the state directory", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 60 });
    await h.connect("files");
  });
  after(async () => {
    await h.close();
  });

  it("the events log is created 0600 and an existing loose one is tightened", async () => {
    const fresh = join(h.home, "events-new.jsonl");
    assert.equal((await h.cli(["ensure", "files", "--events", fresh])).code, 0);
    assert.equal(mode(fresh), 0o600);
    assert.ok(readFileSync(fresh, "utf8").length > 0);

    const loose = join(h.home, "events-loose.jsonl");
    writeFileSync(loose, "");
    chmodSync(loose, 0o666);
    assert.equal((await h.cli(["ensure", "files", "--events", loose])).code, 0);
    assert.equal(mode(loose), 0o600, "tightened");
    assert.ok(readFileSync(loose, "utf8").includes('"skip_record"'));
  });

  it("an events path that is a symlink is refused (78) and its target is untouched", async () => {
    const target = join(h.home, "victim.txt");
    writeFileSync(target, "precious\n");
    chmodSync(target, 0o644);
    const link = join(h.home, "events-link.jsonl");
    symlinkSync(target, link);
    const r = await h.cli(["ensure", "files", "--events", link]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /symbolic link/);
    assert.equal(readFileSync(target, "utf8"), "precious\n");
    assert.equal(mode(target), 0o644);
    const viaEnv = await h.cli(["ensure", "files"], { env: { TOKENKEEPER_EVENTS: link } });
    assert.equal(viaEnv.code, 78);
    assert.equal(readFileSync(target, "utf8"), "precious\n");
  });

  it("--skip-file is created 0600, tightened when loose, and never written through a symlink", async () => {
    await h.connect("gone");
    await h.bed.as.revokeGrantOf((await h.store.get("gone"))!.record.tokens!.refreshToken!.reveal());
    const skipFile = join(h.home, "skips.jsonl");
    const run = (file: string) => h.cli(["run", "--connector", "gone", "--skip-file", file, "--", "true"]);
    assert.equal((await run(skipFile)).code, 77);
    assert.equal(mode(skipFile), 0o600);

    chmodSync(skipFile, 0o644);
    assert.equal((await run(skipFile)).code, 77);
    assert.equal(mode(skipFile), 0o600);
    assert.equal(readFileSync(skipFile, "utf8").trim().split("\n").length, 2);

    const target = join(h.home, "victim-skip.txt");
    writeFileSync(target, "precious\n");
    const link = join(h.home, "skip-link.jsonl");
    symlinkSync(target, link);
    const r = await run(link);
    assert.equal(r.code, 77, "the skip record still reaches stdout");
    assert.match(r.stderr, /cannot write --skip-file .*symbolic link/);
    assert.equal(readFileSync(target, "utf8"), "precious\n");
  });

  it("TOKENKEEPER_HOME naming a regular file is a store error (74) that says so", async () => {
    const file = join(h.home, "not-a-dir");
    writeFileSync(file, "");
    for (const home of [file, join(file, "below")]) {
      const env = { TOKENKEEPER_STORE: "", TOKENKEEPER_HOME: home };
      const r = await h.cli(["status", "--json"], { env });
      assert.equal(r.code, 74, r.stderr);
      assert.match(r.stderr, /is a file, not a directory/);
      assert.equal((JSON.parse(r.stdout).error as { code: string }).code, "store_permission");
    }
  });
});

describe("status is read-only, also for a damaged record", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 60 });
    await h.connect("good");
    await h.connect("broken");
  });
  after(async () => {
    await h.close();
  });

  it("reports the damaged record (74) beside the good one and leaves the file where it is; the next write moves it", async () => {
    const dir = join(fileURLToPath(h.storeUrl), "connectors");
    const file = join(dir, "broken.json");
    writeFileSync(file, '{"version": 1, "record": {"trunc');
    const r = await h.cli(["status", "--json"]);
    assert.equal(r.code, 74, r.stderr);
    const out = JSON.parse(r.stdout) as {
      connectors: { name: string }[];
      problems: { connector: string; code: string; file: string }[];
    };
    assert.deepEqual(
      out.connectors.map((c) => c.name),
      ["good"],
    );
    assert.equal(out.problems[0]!.connector, "broken");
    assert.equal(out.problems[0]!.code, "store_corrupt");
    assert.equal(out.problems[0]!.file, file);
    assert.match(r.stderr, /left in place/);
    assert.ok(existsSync(file), "status moved nothing");
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes("corrupt")),
      [],
    );
    const one = await h.cli(["status", "broken"]);
    assert.equal(one.code, 74);
    assert.ok(existsSync(file));

    // A command that writes the connector (ensure) moves it aside.
    assert.equal((await h.cli(["ensure", "broken"])).code, 74);
    assert.equal(existsSync(file), false);
    assert.equal(readdirSync(dir).filter((f) => f.startsWith("broken.json.corrupt-")).length, 1);
  });
});
