// The command `tokenkeeper run` starts in the run tests: a small MCP client that gets its bearer
// token from the run (the endpoint in its environment, or `tokenkeeper token NAME`) for every
// request, calls the `echo` tool every --interval ms for --seconds, and prints a JSON summary.
//
//   node run-child.mjs --connector NAME --mcp URL [--seconds N] [--interval MS] [--via endpoint|cli|both]
//                      [--exit CODE] [--sigterm-exit CODE] [--marker FILE]
import { execFile } from "node:child_process";
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values } = parseArgs({
  options: {
    connector: { type: "string" },
    mcp: { type: "string" },
    seconds: { type: "string", default: "0" },
    interval: { type: "string", default: "1000" },
    via: { type: "string", default: "endpoint" },
    exit: { type: "string", default: "0" },
    "sigterm-exit": { type: "string" },
    marker: { type: "string" },
  },
});

const MAIN = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));
const mark = (line) => values.marker && appendFileSync(values.marker, `${line}\n`);

if (values["sigterm-exit"]) {
  process.on("SIGTERM", () => {
    mark("SIGTERM");
    process.exit(Number(values["sigterm-exit"]));
  });
}
mark(`started ${process.pid} ${process.env.TOKENKEEPER_RUN_CONNECTORS ?? ""}`);

let n = 0;
async function endpointToken() {
  const url = new URL(`/v1/token/${values.connector}`, process.env.TOKENKEEPER_RUN_URL);
  const res = await fetch(url, {
    headers: { "tokenkeeper-run-secret": process.env.TOKENKEEPER_RUN_SECRET ?? "" },
  });
  const body = await res.json();
  if (!res.ok)
    throw Object.assign(new Error(`endpoint ${res.status} ${body.error?.code}`), { code: body.error?.code });
  return body.access_token;
}
function cliToken() {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", MAIN, "token", values.connector],
      { env: process.env },
      (err, stdout, stderr) => {
        if (err)
          reject(
            Object.assign(new Error(`tokenkeeper token exited ${err.code}: ${stderr}`), {
              exitCode: err.code,
            }),
          );
        else resolve(stdout.trim());
      },
    );
  });
}
async function token() {
  n++;
  if (values.via === "cli" || (values.via === "both" && n % 5 === 0)) return cliToken();
  return endpointToken();
}

const tokens = new Set();
let viaCli = 0;
const summary = {
  calls: 0,
  ok: 0,
  failures: [],
  firstFailureAt: null,
  lastOkAt: null,
  distinctTokens: 0,
  viaCli: 0,
};
if (Number(values.seconds) > 0) {
  const transport = new StreamableHTTPClientTransport(new URL(values.mcp), {
    fetch: async (url, init) => {
      const t = await token();
      if (values.via === "cli" || (values.via === "both" && n % 5 === 0)) viaCli++;
      tokens.add(t);
      const headers = new Headers(init?.headers);
      headers.set("authorization", `Bearer ${t}`);
      return fetch(url, { ...init, headers });
    },
  });
  const client = new Client({ name: "run-child", version: "1.0.0" });
  await client.connect(transport);
  const until = Date.now() + Number(values.seconds) * 1000;
  while (Date.now() < until) {
    summary.calls++;
    try {
      const result = await client.callTool({ name: "echo", arguments: { text: `call ${summary.calls}` } });
      if (result.isError) summary.failures.push(`tool error: ${JSON.stringify(result.content)}`);
      else {
        if (summary.ok === 0) mark("first call ok");
        summary.ok++;
        summary.lastOkAt = Date.now();
      }
    } catch (error) {
      summary.firstFailureAt ??= Date.now();
      summary.failures.push(String(error?.message ?? error));
    }
    await new Promise((r) => setTimeout(r, Number(values.interval)));
  }
  await client.close();
}
summary.distinctTokens = tokens.size;
summary.viaCli = viaCli;
process.stdout.write(`${JSON.stringify({ summary })}\n`);
mark("finished");
if (!values["sigterm-exit"]) process.exit(Number(values.exit));
// Waiting for a signal: stay alive (bounded by the test's own timeout).
setTimeout(() => process.exit(Number(values.exit)), 60_000);
