/**
 * The `tokenkeeper` executable as a user's shell starts it: through a symlink with another name,
 * from a path with a space, with another program's flags after `--`, and into a pipe whose
 * reader has gone. Real child processes of the CLI (bin.ts through tsx).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { recordCliRun } from "../support/secret-scan.js";
import { type Harness, MAIN, startHarness } from "./unattended-harness.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

function spawnNode(
  args: string[],
  env: NodeJS.ProcessEnv,
  { closeStdout = false } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  // The reader of our stdout goes away before the CLI writes a byte (`… | head -0`).
  if (closeStdout) child.stdout.destroy();
  else child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  return new Promise((resolve) =>
    child.on("close", (code) => {
      recordCliRun(
        args.slice(args.findIndex((a) => /main\.ts$|bin\.ts$|tokenkeeper$/.test(a)) + 1),
        stdout,
        stderr,
        "executable",
      );
      resolve({ code, stdout, stderr });
    }),
  );
}

describe("the tokenkeeper executable", () => {
  let h: Harness;
  let dir: string;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 600 });
    await h.connect("alpha");
    dir = await mkdtemp(join(tmpdir(), "tk entry "));
  });
  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs through a symlink named otherwise, in a directory with a space", async () => {
    const link = join(dir, "my tools", "tk-cli");
    await mkdir(join(dir, "my tools"));
    await symlink(MAIN, link);
    const r = await spawnNode(["--import", "tsx", link, "--version"], h.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "0.1.0\n");
  });

  it("runs from an install path with a space (the package's folder reached through it)", async () => {
    const spaced = join(dir, "Program Files", "tokenkeeper");
    await mkdir(join(dir, "Program Files"));
    await symlink(REPO, spaced, "dir");
    const r = await spawnNode(["--import", "tsx", join(spaced, "src/cli/bin.ts"), "status", "--json"], h.env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { connectors: { name: string }[] };
    assert.deepEqual(
      out.connectors.map((c) => c.name),
      ["alpha"],
    );
  });

  it("gives the words after -- to the job: `run -- CMD -h` runs CMD with -h", async () => {
    const r = await h.cli([
      "run",
      "--connector",
      "alpha",
      "--",
      process.execPath,
      "-e",
      "process.stdout.write('job:' + process.argv.slice(1).join(' '))",
      "--",
      "-h",
      "--help",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "job:-h --help --json");
    assert.doesNotMatch(r.stdout, /Usage:/);
  });

  it("still answers --help before --", async () => {
    const r = await h.cli(["run", "--help", "--", "true"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: tokenkeeper run/);
  });

  it("a word after -- is not an option of the command: `token -- --help` is a bad NAME, exit 78", async () => {
    const r = await h.cli(["token", "--", "--help"]);
    assert.equal(r.code, 78);
    assert.doesNotMatch(r.stdout, /Usage:/);
  });

  it("exits quietly with the command's code when stdout's reader has gone (EPIPE)", async () => {
    // Enough output that the writes cannot all land before the pipe is seen closed.
    const r = await spawnNode([...["--import", "tsx", MAIN], "status"], h.env, { closeStdout: true });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|Error|at /);
    assert.equal(r.stderr, "");
  });
});
