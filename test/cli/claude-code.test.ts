/**
 * Claude Code without a proxy: `proxy --print-config --headers-helper` writes an HTTP server
 * entry whose headersHelper runs `tokenkeeper headers NAME`. The contract Claude Code documents
 * (a shell command whose stdout is a JSON object of headers, run at connection) is tested on
 * every run: the helper exactly as configured, through `sh -c`, gives a header the MCP server
 * accepts. With the Claude Code CLI available (CLAUDE_CODE_BIN, or `claude` on PATH), the real
 * client also connects with it: `claude mcp list` reports the server connected.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { updateRecord } from "../../src/store/update.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { runCliInProcess } from "../support/run-cli.js";
import { type Harness, MAIN, startHarness } from "./unattended-harness.js";

/** This CLI by absolute paths, as a client with another cwd and PATH would start it. */
const SELF = {
  command: process.execPath,
  args: ["--import", import.meta.resolve("tsx"), MAIN],
};

function claudeBin(): string | undefined {
  if (process.env.CLAUDE_CODE_BIN) return process.env.CLAUDE_CODE_BIN;
  const found = spawnSync("sh", ["-c", "command -v claude"], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

function printConfig(h: Harness, argv: string[]): Promise<{ code: number; stdout: string }> {
  return runCliInProcess(["proxy", ...argv], { env: h.env, self: SELF });
}

function sh(command: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "sh",
      ["-c", command],
      { cwd, env: { PATH: "/usr/bin:/bin" }, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("Claude Code's headersHelper", () => {
  let h: Harness;
  let elsewhere: string;
  let entry: { type: string; url: string; headersHelper: string };
  before(async () => {
    h = await startHarness({ accessTokenTtl: 600 });
    await h.connect("work");
    elsewhere = await mkdtemp(join(tmpdir(), "tk-claude-code-"));
    const r = await printConfig(h, ["work", "--print-config", "--headers-helper", "--json"]);
    assert.equal(r.code, 0);
    const printed = JSON.parse(r.stdout) as { snippets: { client: string; text: string }[] };
    assert.equal(printed.snippets.length, 1);
    assert.equal(printed.snippets[0]!.client, "claude-code");
    entry = JSON.parse(printed.snippets[0]!.text).mcpServers.work;
  });
  after(async () => {
    await h.close();
    await rm(elsewhere, { recursive: true, force: true });
  });

  it("configures an HTTP server at the connector's URL, with the helper by absolute paths", () => {
    assert.equal(entry.type, "http");
    assert.equal(entry.url, h.bed.mcpUrl);
    assert.ok(entry.headersHelper.includes(`${process.execPath} `), entry.headersHelper);
    assert.match(entry.headersHelper, / headers work$/);
    assert.ok(entry.headersHelper.includes(`TOKENKEEPER_STORE=${h.storeUrl}`));
  });

  it("the helper, run as configured from another directory with a bare PATH, prints headers the server accepts", async () => {
    const r = await sh(entry.headersHelper, elsewhere);
    assert.equal(r.code, 0, r.stderr);
    const headers = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(headers), ["Authorization"]);
    assert.equal(typeof headers.Authorization, "string");
    assert.ok(await mcpAccepts(h.bed.mcpUrl, String(headers.Authorization).replace(/^Bearer /, "")));
  });

  it("when a human must sign in again the helper fails with 77 and prints nothing, so no stale header is sent", async () => {
    await h.connect("lapsed");
    await updateRecord(h.store, "lapsed", (rec) => ({
      ...rec,
      state: {
        ...rec.state,
        health: "reauth_required",
        reauth: { reason: "grant_revoked", since: Date.now(), action: "run `tokenkeeper login`" },
      },
    }));
    const r = await sh(entry.headersHelper.replace(/ headers work$/, " headers lapsed"), elsewhere);
    assert.equal(r.code, 77);
    assert.equal(r.stdout, "");
  });

  it("desktop snippets start node and the script by absolute path: they run with no PATH at all", async () => {
    const r = await printConfig(h, ["work", "--print-config", "--client", "claude-desktop", "--json"]);
    const server = JSON.parse((JSON.parse(r.stdout) as { snippets: { text: string }[] }).snippets[0]!.text)
      .mcpServers.work as { command: string; args: string[]; env: Record<string, string> };
    assert.equal(server.command, process.execPath);
    assert.deepEqual(server.args, [...SELF.args, "proxy", "work"]);
    // A GUI app's environment, minus even its short PATH: the proxy starts and reaches the server.
    const child = spawnSync(server.command, server.args, {
      cwd: elsewhere,
      env: { ...server.env, HOME: elsewhere },
      input: "",
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.ok(child.stderr.includes(`proxying stdio to ${h.bed.mcpUrl}`), child.stderr);
    assert.doesNotMatch(child.stderr, /not found|No such file/);
  });

  it("--launcher path and npx give the other forms", async () => {
    const path = JSON.parse(
      (await printConfig(h, ["work", "--print-config", "--launcher", "path", "--json"])).stdout,
    );
    assert.equal(path.command, "tokenkeeper");
    assert.deepEqual(path.args, ["proxy", "work"]);
    const npx = JSON.parse(
      (await printConfig(h, ["work", "--print-config", "--launcher", "npx", "--json"])).stdout,
    );
    assert.equal(npx.command, "npx");
    assert.deepEqual(npx.args, ["-y", "tokenkeeper@0.1.0", "proxy", "work"]);
  });

  it("Claude Code itself connects with it (`claude mcp list`)", async (t) => {
    const claude = claudeBin();
    if (!claude) {
      t.skip("Claude Code CLI not installed (set CLAUDE_CODE_BIN to run this against it)");
      return;
    }
    const env = { PATH: process.env.PATH, HOME: elsewhere };
    const add = spawnSync(claude, ["mcp", "add-json", "work", JSON.stringify(entry), "--scope", "user"], {
      cwd: elsewhere,
      env,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(add.status, 0, add.stderr);
    const list = await new Promise<string>((resolve) =>
      execFile(claude, ["mcp", "list"], { cwd: elsewhere, env, timeout: 120_000 }, (_e, stdout) =>
        resolve(stdout),
      ),
    );
    assert.match(list, /work: .* - ✔ Connected/, list);
  });
});
