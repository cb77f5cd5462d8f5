// A real remote MCP server for tests: Streamable HTTP at /mcp (stateful sessions) plus the legacy
// HTTP+SSE transport at /sse + /messages, every request guarded by a JWT bearer token issued by
// the bed's authorization server for this exact resource, as the MCP authorization spec asks.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { getOAuthProtectedResourceMetadataUrl } from "@modelcontextprotocol/sdk/server/auth/router.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { bearerChallenge, createBearerVerifier } from "./bearer.js";
import { closeServer, HOST, listen, readBody } from "./http-util.js";
import { createMcpServer } from "./mcp-tools.js";

export interface McpServerOptions {
  /** Issuer of the authorization server whose tokens this server accepts. */
  issuer: string;
  /** Where the AS publishes its keys (default `${issuer}/jwks`, oidc-provider's route). */
  jwksUri?: string;
  /** Port to bind on 127.0.0.1; 0 (default) picks a free one. restart() reuses the bound port. */
  port?: number;
  /** Leeway in seconds when checking exp (default 0). */
  clockToleranceSeconds?: number;
  /** This server's clock minus the real one (ms) when judging exp (default 0); see setClockOffset. */
  clockOffsetMs?: number;
  /** Scopes advertised in the protected-resource metadata (default mcp:tools mcp:admin). */
  scopesSupported?: string[];
  /**
   * `scope` put in 401 challenges, telling clients what to ask for (MCP authorization, scope
   * selection). Default "mcp:tools"; "" to leave it out.
   */
  challengeScope?: string;
  /** Scopes each tool needs; a call without them gets 403 insufficient_scope. */
  toolScopes?: Record<string, string[]>;
}

export interface McpCounters {
  /** Tool invocations that reached a tool (after authentication and scope checks). */
  toolCalls: number;
  toolCallsByName: Record<string, number>;
  /** Requests answered 401. */
  unauthorized: number;
  /** Requests answered 403 insufficient_scope. */
  forbidden: number;
  /** Sessions created (Streamable HTTP initialize, or legacy SSE stream opened). */
  sessions: number;
  /** Authenticated HTTP requests on the MCP endpoints. */
  requests: number;
}

export interface McpTestServer {
  /** The MCP endpoint (and RFC 8707 resource indicator): http://127.0.0.1:PORT/mcp */
  readonly url: string;
  /** Legacy HTTP+SSE endpoint: http://127.0.0.1:PORT/sse */
  readonly sseUrl: string;
  readonly port: number;
  /** RFC 9728 metadata URL for the resource, as advertised in WWW-Authenticate. */
  readonly resourceMetadataUrl: string;
  readonly counters: McpCounters;
  /** Auth info of the last authenticated request. */
  readonly lastAuth: AuthInfo | undefined;
  /** Number of live sessions (both transports). */
  readonly activeSessions: number;
  resetCounters(): void;
  /**
   * Skews the clock this server judges token expiry by (ms ahead of the real clock; negative:
   * behind). With the AS's own offset, it decides whose clock the resource server shares.
   */
  setClockOffset(ms: number): void;
  /** Forgets every session (clients get 404 and must re-initialize), keeping the server up. */
  dropSessions(): Promise<void>;
  /** Stops listening and kills every connection and session, as if the process died. */
  stop(): Promise<void>;
  /** Listens again on the same port (after stop()); sessions from before are gone. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport | SSEServerTransport;
  server: McpServer;
}

type AuthedRequest = IncomingMessage & { auth?: AuthInfo };

function emptyCounters(): McpCounters {
  return { toolCalls: 0, toolCallsByName: {}, unauthorized: 0, forbidden: 0, sessions: 0, requests: 0 };
}

export async function startMcpServer(opts: McpServerOptions): Promise<McpTestServer> {
  const toolScopes: Record<string, string[]> = opts.toolScopes ?? { admin_echo: ["mcp:admin"] };
  const challengeScope = opts.challengeScope ?? "mcp:tools";
  const scopesSupported = opts.scopesSupported ?? ["mcp:tools", "mcp:admin"];

  let counters = emptyCounters();
  let clockOffsetMs = opts.clockOffsetMs ?? 0;
  let lastAuth: AuthInfo | undefined;
  const sessions = new Map<string, Session>();

  // URL-dependent pieces are set once the port is known.
  let url = "";
  let resourceMetadataUrl = "";
  let verify: ReturnType<typeof createBearerVerifier>;

  const newSessionServer = () =>
    createMcpServer({
      onToolCall(name) {
        counters.toolCalls++;
        counters.toolCallsByName[name] = (counters.toolCallsByName[name] ?? 0) + 1;
      },
      requiredScopes: (name) => toolScopes[name] ?? [],
    });

  const sendJson = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
  };

  const resourceMetadata = () => ({
    resource: url,
    authorization_servers: [opts.issuer],
    scopes_supported: scopesSupported,
    bearer_methods_supported: ["header"],
    resource_name: "Tokenkeeper test bed MCP server",
  });

  /** Authenticates a request, answering 400/401 itself on failure. */
  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<AuthInfo | undefined> {
    const result = await verify(req.headers.authorization);
    if (result.ok) {
      counters.requests++;
      lastAuth = result.auth;
      return result.auth;
    }
    if (result.kind === "malformed") {
      sendJson(
        res,
        400,
        { error: "invalid_request", error_description: result.description },
        {
          "www-authenticate": bearerChallenge({
            error: "invalid_request",
            error_description: result.description,
            resource_metadata: resourceMetadataUrl,
          }),
        },
      );
      return undefined;
    }
    counters.unauthorized++;
    // RFC 6750 §3.1: no error code when the request carried no credentials at all.
    const challenge =
      result.kind === "missing"
        ? bearerChallenge({ resource_metadata: resourceMetadataUrl, scope: challengeScope })
        : bearerChallenge({
            error: "invalid_token",
            error_description: result.description,
            resource_metadata: resourceMetadataUrl,
            scope: challengeScope,
          });
    const body =
      result.kind === "missing"
        ? { error: "invalid_token", error_description: "Missing bearer token" }
        : { error: "invalid_token", error_description: result.description };
    sendJson(res, 401, body, { "www-authenticate": challenge });
    return undefined;
  }

  /**
   * MCP authorization (scope challenges): a tool call the token is not scoped for gets
   * 403 insufficient_scope naming the scopes to ask for: the token's plus the missing ones, so a
   * step-up client can request exactly that set.
   */
  function checkToolScopes(body: unknown, auth: AuthInfo, res: ServerResponse): boolean {
    const messages = Array.isArray(body) ? body : [body];
    const granted = new Set(auth.scopes);
    for (const m of messages) {
      if (typeof m !== "object" || m === null || (m as { method?: unknown }).method !== "tools/call")
        continue;
      const name = (m as { params?: { name?: unknown } }).params?.name;
      const needed = typeof name === "string" ? (toolScopes[name] ?? []) : [];
      const missing = needed.filter((s) => !granted.has(s));
      if (missing.length === 0) continue;
      counters.forbidden++;
      const description = `Tool ${String(name)} requires scope ${missing.join(" ")}`;
      sendJson(
        res,
        403,
        { error: "insufficient_scope", error_description: description },
        {
          "www-authenticate": bearerChallenge({
            error: "insufficient_scope",
            error_description: description,
            scope: [...new Set([...auth.scopes, ...needed])].join(" "),
            resource_metadata: resourceMetadataUrl,
          }),
        },
      );
      return false;
    }
    return true;
  }

  const jsonRpcError = (res: ServerResponse, status: number, code: number, message: string) =>
    sendJson(res, status, { jsonrpc: "2.0", error: { code, message }, id: null });

  async function parseJson(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<{ ok: boolean; body?: unknown }> {
    try {
      return { ok: true, body: JSON.parse((await readBody(req)).toString("utf8")) };
    } catch {
      jsonRpcError(res, 400, -32700, "Parse error");
      return { ok: false };
    }
  }

  async function handleStreamable(req: AuthedRequest, res: ServerResponse, auth: AuthInfo): Promise<void> {
    const sid = req.headers["mcp-session-id"];
    const sessionId = typeof sid === "string" ? sid : undefined;
    let body: unknown;
    if (req.method === "POST") {
      const parsed = await parseJson(req, res);
      if (!parsed.ok) return;
      body = parsed.body;
      if (!checkToolScopes(body, auth, res)) return;
    }
    req.auth = auth;

    if (sessionId !== undefined) {
      const session = sessions.get(sessionId);
      // Streamable HTTP: an unknown (e.g. expired, or pre-restart) session is 404, which tells
      // the client to start a new one.
      if (!session || !(session.transport instanceof StreamableHTTPServerTransport)) {
        return jsonRpcError(res, 404, -32001, "Session not found");
      }
      return session.transport.handleRequest(req, res, body);
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonRpcError(res, 400, -32000, "Bad Request: no valid session id provided");
    }
    const server = newSessionServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        counters.sessions++;
        sessions.set(id, { transport, server });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  /** Legacy HTTP+SSE transport (MCP 2024-11-05): GET /sse opens the stream, POST /messages talks. */
  async function handleLegacy(
    req: AuthedRequest,
    res: ServerResponse,
    path: string,
    auth: AuthInfo,
  ): Promise<void> {
    req.auth = auth;
    if (path === "/sse" && req.method === "GET") {
      const transport = new SSEServerTransport("/messages", res);
      const server = newSessionServer();
      sessions.set(transport.sessionId, { transport, server });
      counters.sessions++;
      transport.onclose = () => sessions.delete(transport.sessionId);
      await server.connect(transport);
      return;
    }
    if (path === "/messages" && req.method === "POST") {
      const sessionId = new URL(req.url ?? "/", url).searchParams.get("sessionId") ?? "";
      const session = sessions.get(sessionId);
      if (!session || !(session.transport instanceof SSEServerTransport)) {
        return jsonRpcError(res, 404, -32001, "Session not found");
      }
      const parsed = await parseJson(req, res);
      if (!parsed.ok || !checkToolScopes(parsed.body, auth, res)) return;
      return session.transport.handlePostMessage(req, res, parsed.body);
    }
    res.writeHead(405, { allow: path === "/sse" ? "GET" : "POST" }).end();
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://placeholder").pathname;
    // RFC 9728 §3.1: metadata for resource /mcp lives at /.well-known/oauth-protected-resource/mcp;
    // the bare well-known is served too, for clients that only try the root.
    if (
      path === "/.well-known/oauth-protected-resource/mcp" ||
      path === "/.well-known/oauth-protected-resource"
    ) {
      if (req.method !== "GET") return void res.writeHead(405, { allow: "GET" }).end();
      return sendJson(res, 200, resourceMetadata(), { "cache-control": "no-store" });
    }
    const isMcp = path === "/mcp";
    const isLegacy = path === "/sse" || path === "/messages";
    if (!isMcp && !isLegacy) return sendJson(res, 404, { error: "not_found" });

    const auth = await authenticate(req, res);
    if (!auth) return;
    if (isMcp) return handleStreamable(req, res, auth);
    return handleLegacy(req, res, path, auth);
  }

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    route(req, res).catch((err: unknown) => {
      console.error("[test-bed mcp server] request failed:", err);
      if (!res.headersSent) jsonRpcError(res, 500, -32603, "Internal error");
      else res.destroy();
    });
  };

  let server: Server | undefined;
  const first = await listen(handler, opts.port ?? 0);
  server = first.server;
  const port = first.port;
  url = `http://${HOST}:${port}/mcp`;
  resourceMetadataUrl = getOAuthProtectedResourceMetadataUrl(new URL(url));
  verify = createBearerVerifier({
    issuer: opts.issuer,
    jwksUri: opts.jwksUri ?? `${opts.issuer}/jwks`,
    audience: url,
    clockToleranceSeconds: opts.clockToleranceSeconds ?? 0,
    now: () => Date.now() + clockOffsetMs,
  });

  async function dropSessions(): Promise<void> {
    const all = [...sessions.values()];
    sessions.clear();
    await Promise.allSettled(all.map((s) => s.server.close()));
  }

  async function stop(): Promise<void> {
    const s = server;
    server = undefined;
    await dropSessions();
    if (s) await closeServer(s);
  }

  return {
    url,
    sseUrl: `http://${HOST}:${port}/sse`,
    port,
    resourceMetadataUrl,
    get counters() {
      return counters;
    },
    get lastAuth() {
      return lastAuth;
    },
    get activeSessions() {
      return sessions.size;
    },
    resetCounters() {
      counters = emptyCounters();
    },
    setClockOffset(ms) {
      clockOffsetMs = ms;
    },
    dropSessions,
    stop,
    async restart() {
      if (server) return;
      server = (await listen(handler, port)).server;
    },
    close: stop,
  };
}
