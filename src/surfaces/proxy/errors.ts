/**
 * What the proxy tells an MCP client when it cannot deliver a request: pure decisions, no I/O.
 *
 * Every failure becomes a JSON-RPC error in the implementation-defined server-error range
 * (JSON-RPC 2.0 §5.1: -32000 to -32099). We avoid the codes the MCP SDK already gives a meaning
 * (-32000 connection closed, -32001 request timeout, -32042 URL elicitation required), so a client
 * can tell "Tokenkeeper could not deliver this" from anything the remote server said. `data`
 * carries the structured record; `message` is written for a human and names the fix.
 */
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  EXIT,
  errorKindOf,
  isTokenkeeperError,
  ProtocolError,
  TokenkeeperError,
  TransientError,
} from "../../core/errors.js";
import { scrubText } from "../../core/secret.js";

/** JSON-RPC error codes of the proxy, documented in docs/proxy.md. */
export const PROXY_ERROR = {
  /** A human must log in again (or grant a scope); `data` is the skip record. */
  reauthRequired: -32030,
  /** The remote server is unreachable, the connection dropped, or the token endpoint is down: retry later. */
  unavailable: -32031,
  /** The remote server answered something that is not valid MCP (bad JSON, bad JSON-RPC, wrong content type). */
  badResponse: -32032,
  /** The proxy will not take this request: too many in flight, or it is shutting down. */
  refused: -32033,
  /** The proxy is misconfigured (unknown connector, bad store, bad URL). */
  config: -32034,
} as const;

export type RequestId = string | number;

export interface JsonRpcErrorResponse {
  jsonrpc: "2.0";
  id: RequestId;
  error: { code: number; message: string; data?: unknown };
}

/** The JSON-RPC code for an error, read from its kind in the error table (src/core/errors.ts). */
export function rpcCodeFor(error: TokenkeeperError): number {
  switch (errorKindOf(error).exit) {
    case EXIT.reauth:
      return PROXY_ERROR.reauthRequired;
    case EXIT.transient:
      return PROXY_ERROR.unavailable;
    case EXIT.protocol:
      return PROXY_ERROR.badResponse;
    case EXIT.failure:
      return PROXY_ERROR.refused;
    default:
      return PROXY_ERROR.config;
  }
}

/** The error response for one request. `data` is the caller's structured record (the skip record). */
export function errorResponse(id: RequestId, error: TokenkeeperError, data: unknown): JsonRpcErrorResponse {
  return {
    jsonrpc: "2.0",
    id,
    error: { code: rpcCodeFor(error), message: `tokenkeeper proxy: ${scrubText(error.message, 1000)}`, data },
  };
}

/** Why a request's exchange with the remote server ended without an answer. */
export type LossKind =
  /** The connection broke (network error, server died) while the answer was outstanding. */
  | "connection_lost"
  /** The remote server forgot the session (restart, expiry): the proxy starts a new one. */
  | "session_lost"
  /** The stream ended cleanly but carried no answer (often: the answer was malformed and dropped). */
  | "no_answer"
  /** The proxy is shutting down. */
  | "shutdown";

export interface LossContext {
  /** Where the server is, for the message (origin and path, no query). */
  where: string;
  method: string;
  /** The last thing the transport complained about, if recent: it often says what was malformed. */
  lastProblem?: string;
  cause?: string;
}

/** Turns "the exchange ended without an answer" into a typed error whose message says what to do. */
export function lossError(kind: LossKind, ctx: LossContext): TokenkeeperError {
  const detail = ctx.cause ? ` (${scrubText(ctx.cause, 200)})` : "";
  switch (kind) {
    case "connection_lost":
      return new TransientError(
        `the connection to the remote MCP server ${ctx.where} was lost while "${ctx.method}" was in flight${detail}; the request may or may not have run. The proxy reconnects by itself: retry the request`,
        { kind: "connection_lost", url: ctx.where },
      );
    case "session_lost":
      return new TransientError(
        `the remote MCP server ${ctx.where} ended the session while "${ctx.method}" was in flight (it restarted or expired the session); the proxy has started a new session: retry the request`,
        { kind: "session_lost", url: ctx.where },
      );
    case "no_answer":
      if (ctx.lastProblem) {
        return new ProtocolError(
          `the remote MCP server ${ctx.where} sent a malformed answer to "${ctx.method}" (${scrubText(ctx.lastProblem, 300)}); the proxy keeps running`,
          { kind: "malformed_response", server: ctx.where },
        );
      }
      // A clean end with nothing malformed: the server gave up on the request (it was shutting
      // down, or closed the session). Worth retrying, unlike a malformed answer.
      return new TransientError(
        `the remote MCP server ${ctx.where} ended the response to "${ctx.method}" without answering it (it may be restarting or have closed the session); retry the request`,
        { kind: "no_answer", url: ctx.where },
      );
    case "shutdown":
      return new TokenkeeperError(
        "cancelled",
        `the proxy is shutting down; "${ctx.method}" was not answered`,
        { kind: "shutdown" },
      );
  }
}

/** What a low-level failure of the SDK transport or of fetch means, as a typed error. */
export function classifyUpstreamError(
  error: unknown,
  ctx: { where: string; status?: number; method?: string },
): TokenkeeperError {
  if (isTokenkeeperError(error)) return error;
  const what = ctx.method ? `"${ctx.method}"` : "the message";
  const status = ctx.status ?? (error instanceof StreamableHTTPError ? error.code : undefined);
  if (status !== undefined && status >= 400) {
    const text = error instanceof Error ? scrubText(error.message, 300) : "";
    if (status >= 500 || status === 429 || status === 408) {
      return new TransientError(
        `the remote MCP server ${ctx.where} answered HTTP ${status} to ${what}; try again later (${text})`,
        {
          status,
          url: ctx.where,
        },
      );
    }
    return new ProtocolError(
      `the remote MCP server ${ctx.where} refused ${what} with HTTP ${status} (${text})`,
      {
        status,
        server: ctx.where,
      },
    );
  }
  if (error instanceof StreamableHTTPError && error.code === -1) {
    return new ProtocolError(
      `the remote MCP server ${ctx.where} answered ${what} with ${scrubText(error.message, 200)}`,
      {
        server: ctx.where,
        kind: "malformed_response",
      },
    );
  }
  if (isMalformed(error)) {
    return new ProtocolError(
      `the remote MCP server ${ctx.where} sent a malformed answer to ${what} (${describeProblem(error)})`,
      {
        server: ctx.where,
        kind: "malformed_response",
      },
    );
  }
  const errno = networkCode(error);
  if (errno || error instanceof TypeError) {
    return new TransientError(
      `cannot reach the remote MCP server ${ctx.where}${errno ? ` (${errno})` : ""}; the proxy keeps retrying: try again shortly`,
      { url: ctx.where, kind: "network", ...(errno ? { errno } : {}) },
    );
  }
  if (error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError")) {
    return new TransientError(`the exchange with ${ctx.where} was interrupted (${error.name})`, {
      url: ctx.where,
      kind: "aborted",
    });
  }
  return new TransientError(`sending ${what} to ${ctx.where} failed: ${describeProblem(error)}`, {
    url: ctx.where,
  });
}

/** JSON that does not parse, or JSON that is not JSON-RPC (a zod issue list). */
export function isMalformed(error: unknown): boolean {
  if (error instanceof SyntaxError) return true;
  return error instanceof Error && error.name === "ZodError";
}

export function describeProblem(error: unknown): string {
  if (error instanceof Error) {
    if (error.name === "ZodError") return "not a valid JSON-RPC message";
    return scrubText(error.message, 200);
  }
  return scrubText(String(error), 200);
}

/** The errno of a failed fetch (undici puts it on `cause`), e.g. ECONNREFUSED. */
export function networkCode(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 4 && e && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z_]+$|^UND_ERR/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
