#!/usr/bin/env node
/**
 * The client the MCP conformance suite drives (`conformance client --command "node client.mjs"`):
 * it does what a person does with Tokenkeeper, nothing more.
 *
 *   1. `tokenkeeper login <server-url>` once, with the credentials they were handed (the
 *      suite's MCP_CONFORMANCE_CONTEXT stands for what an operator gets out of band: a client id
 *      and secret, or a private key, and whether that client is a machine client);
 *   2. an MCP client (the SDK's own) started against `tokenkeeper proxy <name>` over stdio, as a
 *      desktop client would: initialize, list the tools, call them;
 *   3. when a call fails with "re-authorization required" (-32030), they run the login command
 *      the error names and try the call again — at most twice, as a person would give up;
 *   4. when login says the server needs no authorization, they do what its message says:
 *      `tokenkeeper proxy URL --no-auth`.
 *
 * Nothing depends on which scenario runs, except that a machine client logs in with
 * --client-credentials (the operator knows what kind of client they were given).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
// The installed command, as `npm link` would put it on PATH.
const cli = join(root, JSON.parse(readFileSync(join(root, "package.json"), "utf8")).bin.tokenkeeper);
const browser = join(here, "browser.mjs");
const REAUTH = -32030;
const MAX_RELOGINS = 2;

const serverUrl = process.argv.at(-1);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "";
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? "{}");
const home = mkdtempSync(join(tmpdir(), "tokenkeeper-conformance-"));
const env = {
  ...process.env,
  TOKENKEEPER_HOME: home,
  BROWSER: `${process.execPath} ${browser}`,
};
delete env.TOKENKEEPER_STORE;
const name = "conformance";
const log = (line) => process.stderr.write(`[client ${new Date().toISOString().slice(11, 23)}] ${line}\n`);

function tokenkeeper(args) {
  log(`$ tokenkeeper ${args.join(" ")}`);
  const result = spawnSync(process.execPath, [cli, ...args], { env, encoding: "utf8", timeout: 60_000 });
  process.stderr.write(result.stderr ?? "");
  process.stderr.write(result.stdout ?? "");
  log(`exit ${result.status}`);
  let json;
  try {
    json = JSON.parse(result.stdout);
  } catch {}
  return { status: result.status, json };
}

/** The login command in an error's action: "run `tokenkeeper login … --scope "a b"`". */
function loginArgs(action) {
  const command = /`tokenkeeper (login [^`]*)`/.exec(action ?? "")?.[1];
  if (!command) return undefined;
  return [...command.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

async function withRelogin(what, call) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const args =
        error instanceof McpError && error.code === REAUTH ? loginArgs(error.data?.action) : undefined;
      if (!args || attempt >= MAX_RELOGINS) throw error;
      log(`${what}: ${error.message}`);
      if (tokenkeeper(args).status !== 0) throw error;
    }
  }
}

/** Arguments a person would type to try a tool: a sample value for each required property. */
function sampleArguments(schema) {
  const samples = { number: 1, integer: 1, string: "test", boolean: true, array: [], object: {} };
  const args = {};
  for (const key of schema?.required ?? []) args[key] = samples[schema.properties?.[key]?.type] ?? null;
  return args;
}

async function main() {
  const loginCommand = ["login", serverUrl, "--name", name];
  if (context.client_id) loginCommand.push("--client-id", context.client_id);
  if (context.client_secret) env.TOKENKEEPER_CLIENT_SECRET = context.client_secret;
  if (context.private_key_pem) {
    const keyFile = join(home, "client-key.pem");
    writeFileSync(keyFile, context.private_key_pem, { mode: 0o600 });
    loginCommand.push("--private-key-file", keyFile);
  }
  if (scenario.includes("client-credentials")) loginCommand.push("--client-credentials");
  loginCommand.push("--json");
  const loggedIn = tokenkeeper(loginCommand);
  const open = loggedIn.status !== 0 && loggedIn.json?.error?.problem === "no_auth_required";
  if (loggedIn.status !== 0 && !open) throw new Error(`login failed (exit ${loggedIn.status})`);

  const transport = new StdioClientTransport({
    command: process.execPath,
    args: open ? [cli, "proxy", serverUrl, "--no-auth"] : [cli, "proxy", name],
    env,
    stderr: "inherit",
  });
  const client = new Client({ name: "tokenkeeper-conformance", version: "1.0.0" });
  await client.connect(transport, { timeout: 30_000 });
  log("connected through the proxy");
  try {
    const { tools } = await withRelogin("tools/list", () => client.listTools());
    log(`tools/list: ${tools.map((t) => t.name).join(", ") || "(none)"}`);
    for (const tool of tools) {
      const result = await withRelogin(`tools/call ${tool.name}`, () =>
        client.callTool({ name: tool.name, arguments: sampleArguments(tool.inputSchema) }),
      );
      log(`tools/call ${tool.name}: ${result.isError ? "error" : "ok"}`);
    }
  } finally {
    await client.close();
  }
}

try {
  await main();
} catch (error) {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  rmSync(home, { recursive: true, force: true });
}
