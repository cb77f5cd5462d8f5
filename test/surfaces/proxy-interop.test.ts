/**
 * The proxy against servers that behave as the MCP conformance suite's do, in-process:
 * a stateless server with no GET stream (404 to a GET without a session id), and a server that
 * lets `initialize` through and asks for a wider scope (403 insufficient_scope) on one tool.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { systemClock } from "../../src/core/clock.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import { startInProcessProxy } from "../support/in-process-proxy.js";

interface StatelessServer {
  url: string;
  counts: { initialize: number; gets: number; toolCalls: number; forbidden: number };
  /** Scopes each access token carries. */
  grants: Map<string, string[]>;
  close(): Promise<void>;
}

/**
 * A stateless Streamable HTTP server (no session ids) with no GET stream, like the suite's:
 * initialize needs no token; every other request needs a known token, and `admin` needs the
 * `write` scope (403 insufficient_scope otherwise, RFC 6750 §3.1).
 */
async function startStatelessServer(
  options: { open?: boolean; stepUpStatus?: 401 | 403 } = {},
): Promise<StatelessServer> {
  const counts = { initialize: 0, gets: 0, toolCalls: 0, forbidden: 0 };
  const grants = new Map<string, string[]>();
  let refreshed = 0;
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/token") {
      // A refresh keeps the grant's scope (RFC 6749 §6): it cannot add "write".
      for await (const _ of req) void _;
      const token = `refreshed-${++refreshed}`;
      grants.set(token, ["read"]);
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify({ access_token: token, token_type: "Bearer", expires_in: 3600, scope: "read" }));
      return;
    }
    if (req.method !== "POST") {
      counts.gets++;
      res.writeHead(404).end("Not Found");
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
      method?: string;
      params?: { name?: string };
    };
    if (body.method === "initialize") counts.initialize++;
    if (!options.open && body.method !== "initialize" && !body.method?.startsWith("notifications/")) {
      const token = req.headers.authorization?.replace(/^Bearer /, "") ?? "";
      const scopes = grants.get(token);
      if (!scopes) {
        res.writeHead(401, { "www-authenticate": 'Bearer error="invalid_token"' }).end();
        return;
      }
      if (body.method === "tools/call" && body.params?.name === "admin" && !scopes.includes("write")) {
        counts.forbidden++;
        const status = options.stepUpStatus ?? 403;
        const error = status === 403 ? "insufficient_scope" : "invalid_token";
        res.writeHead(status, { "www-authenticate": `Bearer error="${error}", scope="read write"` }).end();
        return;
      }
    }
    if (body.method === "tools/call") counts.toolCalls++;
    const mcp = new McpServer({ name: "stateless", version: "1.0.0" });
    mcp.registerTool("echo", { description: "echo" }, async () => ({
      content: [{ type: "text", text: "echo" }],
    }));
    mcp.registerTool("admin", { description: "admin" }, async () => ({
      content: [{ type: "text", text: "admin" }],
    }));
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on("close", () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    counts,
    grants,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function proxyFor(upstream: StatelessServer, store: MemoryStore, open = false) {
  const manager = new TokenManager({ store, clock: systemClock });
  return startInProcessProxy(
    {
      manager,
      resolve: async () =>
        open
          ? { connector: upstream.url, url: upstream.url, open: true }
          : { connector: "interop", url: upstream.url },
      clock: systemClock,
    },
    "interop",
  );
}

/** Calls `admin`, which needs the write scope the grant lacks: the proxy's refusal, "a person must act" (-32030). */
async function refusedAdmin(client: Client): Promise<{ action: string; reason: string }> {
  const refused = await client.callTool({ name: "admin", arguments: {} }).then(
    () => assert.fail("admin needs the write scope"),
    (error: unknown) => error,
  );
  assert.ok(refused instanceof McpError);
  assert.equal(refused.code, -32030);
  return refused.data as { action: string; reason: string };
}

/** The command a person is told to run: login, this server, this connector, the scope asked for (however quoted). */
function assertLoginAction(action: string, url: string): void {
  const words = [...action.matchAll(/'([^']*)'|"([^"]*)"|([^\s`]+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
  const at = words.indexOf("login");
  assert.ok(at > 0 && words[at - 1] === "tokenkeeper", action);
  assert.equal(words[at + 1], url, action);
  assert.equal(words[words.indexOf("--name") + 1], "interop", action);
  assert.equal(words[words.indexOf("--scope") + 1], "read write", action);
}

function connectorFor(upstream: StatelessServer, token: string, scope: string) {
  const now = Date.now();
  const origin = new URL(upstream.url).origin;
  return makeRecord(
    "interop",
    {
      scope,
      server: {
        mcpUrl: upstream.url,
        resource: upstream.url,
        issuer: origin,
        metadata: { issuer: origin, token_endpoint: `${origin}/token` },
      },
      tokens: makeTokens({ accessToken: new Secret(token), scope }, now),
    },
    now,
  );
}

describe("proxy interop with stateless servers", () => {
  const servers: StatelessServer[] = [];
  after(async () => Promise.all(servers.map((s) => s.close())));

  /** A stateless server, and the proxy in front of it with a stored token that holds only the `read` scope. */
  async function readOnlyProxy(options?: { stepUpStatus?: 401 | 403 }) {
    const upstream = await startStatelessServer(options);
    servers.push(upstream);
    upstream.grants.set("token-read", ["read"]);
    const store = new MemoryStore();
    await store.put("interop", connectorFor(upstream, "token-read", "read"), null);
    return { upstream, store, p: await proxyFor(upstream, store) };
  }

  it("a 404 to the GET stream without a session id is 'no stream', not 'session gone'", async () => {
    const { upstream, p } = await readOnlyProxy();
    try {
      for (let i = 0; i < 20; i++) {
        const result = await p.client.callTool({ name: "echo", arguments: {} });
        assert.equal(result.isError, undefined);
      }
      // The GET was tried and answered 404; no new session was opened because of it.
      assert.ok(upstream.counts.gets >= 1);
      assert.equal(upstream.counts.initialize, 1);
      assert.equal(upstream.counts.toolCalls, 20);
      assert.ok(
        !p.logs.some((l) => /session re-established|no longer knows the session/.test(l)),
        p.logs.join("\n"),
      );
    } finally {
      await p.stop();
    }
  });

  it("relays a server that needs no authorization without a token or a connector (--no-auth)", async () => {
    const upstream = await startStatelessServer({ open: true });
    servers.push(upstream);
    const store = new MemoryStore();
    const p = await proxyFor(upstream, store, true);
    try {
      const { tools } = await p.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ["admin", "echo"]);
      assert.equal((await p.client.callTool({ name: "echo", arguments: {} })).isError, undefined);
      assert.equal(upstream.counts.toolCalls, 1);
      assert.deepEqual(await store.list(), [], "nothing stored");
      assert.ok(
        p.logs.some((l) => /without authorization/.test(l)),
        p.logs.join("\n"),
      );
    } finally {
      await p.stop();
    }
  });

  it("a 401 naming a scope the grant lacks: one refresh, then the login command with that scope", async () => {
    const { upstream, p } = await readOnlyProxy({ stepUpStatus: 401 });
    try {
      assert.equal((await p.client.callTool({ name: "echo", arguments: {} })).isError, undefined);
      const data = await refusedAdmin(p.client);
      assertLoginAction(data.action, upstream.url);
      assert.equal(upstream.counts.forbidden, 2, "the old token, then the refreshed one: no loop");
    } finally {
      await p.stop();
    }
  });

  it("step-up: the login command with the scope asked for, then the new token is used at once", async () => {
    const { upstream, store, p } = await readOnlyProxy();
    try {
      assert.equal((await p.client.callTool({ name: "echo", arguments: {} })).isError, undefined);
      const data = await refusedAdmin(p.client);
      assert.equal(data.reason, "insufficient_scope");
      assertLoginAction(data.action, upstream.url);
      // Other calls keep working.
      assert.equal((await p.client.callTool({ name: "echo", arguments: {} })).isError, undefined);

      // What `login --scope "read write"` does: a new token set in the store, from another process.
      upstream.grants.set("token-write", ["read", "write"]);
      const current = (await store.get("interop"))!;
      await store.put("interop", connectorFor(upstream, "token-write", "read write"), current.version);

      const forbiddenBefore = upstream.counts.forbidden;
      const granted = await p.client.callTool({ name: "admin", arguments: {} });
      assert.equal(granted.isError, undefined);
      // One 403 with the old token from memory, then the store's token: no second person needed.
      assert.equal(upstream.counts.forbidden, forbiddenBefore + 1);
      const again = await p.client.callTool({ name: "admin", arguments: {} });
      assert.equal(again.isError, undefined);
      assert.equal(upstream.counts.forbidden, forbiddenBefore + 1);
    } finally {
      await p.stop();
    }
  });
});
