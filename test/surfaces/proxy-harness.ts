/**
 * Shared set-up for the proxy tests: a connector logged in to the test bed in a temp file store,
 * the real CLI entry point (`tokenkeeper proxy`) as a child process, and an SDK client talking
 * to it over stdio, with handlers for the server-to-client requests the bed sends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import type { ConnectorSettings } from "../../src/core/record.js";
import { FileStore } from "../../src/store/file-store.js";
import type { TestBed } from "../bed/index.js";
import { nodeArgsFor } from "../support/child-entry.js";
import { connectTestBed } from "../support/connect.js";
import { recordOutput } from "../support/secret-scan.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = join(REPO, "src", "cli", "bin.ts");

export interface Home {
  dir: string;
  store: FileStore;
  cleanup(): Promise<void>;
}

/** A TOKENKEEPER_HOME with connector `name` logged in to the bed. */
export async function homeWithConnector(
  bed: TestBed,
  name = "bed",
  mcpUrl?: string,
  settings?: ConnectorSettings,
): Promise<Home> {
  const dir = await mkdtemp(join(tmpdir(), "tk-proxy-"));
  const store = new FileStore({ dir });
  await connectTestBed(bed, store, name, settings ? { settings } : {});
  if (mcpUrl) {
    // Same grant (its audience stays the bed's resource); a different endpoint to talk to.
    const stored = (await store.get(name))!;
    await store.put(name, { ...stored.record, server: { ...stored.record.server, mcpUrl } }, stored.version);
  }
  return {
    dir,
    store,
    async cleanup() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface ProxyProcess {
  client: Client;
  transport: StdioClientTransport;
  /** Everything the proxy wrote to stderr so far. */
  stderr(): string;
  /** Resolves when stderr contains `pattern` (or rejects after `ms`). */
  waitForStderr(pattern: RegExp, ms?: number): Promise<string>;
  pid(): number | null;
  close(): Promise<void>;
}

export interface StartOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Answers elicitation/create (default: accept with answer "yes"). */
  onElicit?: (message: string) => Record<string, unknown>;
}

/** Starts `tokenkeeper proxy <args>` and connects an SDK client to it over stdio. */
export async function startProxy(
  home: Home,
  target: string,
  options: StartOptions = {},
): Promise<ProxyProcess> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [...nodeArgsFor(MAIN), "proxy", target, ...(options.args ?? [])],
    env: { PATH: process.env.PATH ?? "", TOKENKEEPER_HOME: home.dir, ...options.env },
    stderr: "pipe",
    cwd: REPO,
  });
  let stderr = "";
  const waiters: { pattern: RegExp; resolve: (s: string) => void }[] = [];
  transport.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
    for (const w of [...waiters]) {
      if (w.pattern.test(stderr)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(stderr);
      }
    }
  });
  const client = new Client(
    { name: "proxy-test", version: "1.0.0" },
    { capabilities: { elicitation: {}, sampling: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (request) => ({
    action: "accept",
    content: options.onElicit?.(request.params.message) ?? { answer: "yes" },
  }));
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const first = request.params.messages[0]?.content;
    const text = first && "text" in first ? String(first.text) : "";
    return { model: "test-model", role: "assistant", content: { type: "text", text: `sampled: ${text}` } };
  });
  await client.connect(transport);
  // What the proxy says to its MCP client, and its stderr, go on the record for the secret scan.
  const deliver = transport.onmessage;
  transport.onmessage = (message) => {
    recordOutput(`proxy ${target} stdout message`, JSON.stringify(message));
    deliver?.(message);
  };
  transport.stderr?.on("end", () => recordOutput(`proxy ${target} stderr`, stderr));
  return {
    client,
    transport,
    stderr: () => stderr,
    waitForStderr(pattern, ms = 10_000) {
      if (pattern.test(stderr)) return Promise.resolve(stderr);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stderr never matched ${pattern}:\n${stderr}`)), ms);
        waiters.push({
          pattern,
          resolve: (s) => {
            clearTimeout(timer);
            resolve(s);
          },
        });
      });
    },
    pid: () => transport.pid,
    async close() {
      await client.close().catch(() => {});
    },
  };
}

/** The text of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? "").join("");
}

export interface FaultyFront {
  url: string;
  /** Requests seen, by kind. */
  counts: { malformed: number; forwarded: number };
  close(): Promise<void>;
}

/**
 * A reverse proxy in front of the bed's MCP server that answers some calls with garbage: an
 * `echo` whose text starts with "malformed-json" gets a JSON body cut in half; "malformed-sse"
 * gets an event stream whose event is not JSON-RPC. Everything else passes through untouched.
 */
export async function startFaultyFront(upstreamUrl: string): Promise<FaultyFront> {
  const upstream = new URL(upstreamUrl);
  const counts = { malformed: 0, forwarded: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const text = body.toString("utf8");
      const fault = /"name":"echo".*"text":"(malformed-(?:json|sse))/.exec(text)?.[1];
      if (req.method === "POST" && fault) {
        counts.malformed++;
        const id = (JSON.parse(text) as { id: unknown }).id;
        if (fault === "malformed-json") {
          res.writeHead(200, {
            "content-type": "application/json",
            "mcp-session-id": String(req.headers["mcp-session-id"] ?? ""),
          });
          res.end(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"te`);
        } else {
          res.writeHead(200, {
            "content-type": "text/event-stream",
            "mcp-session-id": String(req.headers["mcp-session-id"] ?? ""),
          });
          res.end(`event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(id)},"resu\n\n`);
        }
        return;
      }
      counts.forwarded++;
      const forward = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: req.url,
          method: req.method,
          headers: { ...req.headers, host: upstream.host },
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on("error", () => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${upstream.pathname}`,
    counts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RawMessage {
  jsonrpc: "2.0";
  id?: string | number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

export interface RawProxy {
  child: ChildProcess;
  send(message: Omit<RawMessage, "jsonrpc">): void;
  /** The next message satisfying `match` (already received ones count), or a rejection after `ms`. */
  waitFor(match: (m: RawMessage) => boolean, ms?: number): Promise<RawMessage>;
  /** Sends a request and waits for its answer. */
  request(method: string, params?: Record<string, unknown>, ms?: number): Promise<RawMessage>;
  /** initialize + initialized. */
  initialize(): Promise<RawMessage>;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let rawIds = 0;

/** The proxy as a plain child process speaking newline-delimited JSON-RPC: for lifecycle tests that need the process itself. */
export function spawnRaw(
  home: Home,
  target: string,
  args: string[] = [],
  env: Record<string, string> = {},
): RawProxy {
  const child = spawn(process.execPath, [...nodeArgsFor(MAIN), "proxy", target, ...args], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? "", TOKENKEEPER_HOME: home.dir, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const received: RawMessage[] = [];
  const waiters: { match: (m: RawMessage) => boolean; resolve: (m: RawMessage) => void }[] = [];
  let buffer = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("utf8");
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (!line.trim()) continue;
      recordOutput(`raw proxy ${target} stdout line`, line);
      const message = JSON.parse(line) as RawMessage;
      const waiter = waiters.find((w) => w.match(message));
      if (waiter) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(message);
      } else received.push(message);
    }
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  child.stderr!.once("end", () => recordOutput(`raw proxy ${target} stderr`, stderr));
  const raw: RawProxy = {
    child,
    send(message) {
      child.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", ...message })}\n`);
    },
    waitFor(match, ms = 10_000) {
      const at = received.findIndex(match);
      if (at >= 0) return Promise.resolve(received.splice(at, 1)[0]!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching message within ${ms} ms; stderr:\n${stderr}`)),
          ms,
        );
        waiters.push({
          match,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
    request(method, params, ms) {
      const id = `raw-${++rawIds}`;
      raw.send({ id, method, ...(params ? { params } : {}) });
      return raw.waitFor((m) => m.id === id && m.method === undefined, ms);
    },
    async initialize() {
      const answer = await raw.request("initialize", {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "raw-test", version: "1.0.0" },
      });
      raw.send({ method: "notifications/initialized" });
      return answer;
    },
    stderr: () => stderr,
    exited,
  };
  return raw;
}
