/**
 * The per-run token endpoint: how a command started by `tokenkeeper run` gets a current access
 * token at any moment without a second refresher. The parent's one TokenManager answers; the
 * child asks over HTTP on 127.0.0.1 (ephemeral port) with a random per-run secret, found in its
 * environment:
 *
 *   TOKENKEEPER_RUN_URL         http://127.0.0.1:PORT
 *   TOKENKEEPER_RUN_SECRET      64 hex chars, sent as the `tokenkeeper-run-secret` header
 *   TOKENKEEPER_RUN_CONNECTORS  the connectors of this run, comma-separated
 *
 *   GET /v1/token/NAME[?min_ttl_ms=N]
 *     200 {"connector","access_token","token_type","expires_at","expires_in"}
 *     4xx/5xx {"error":{"code","message"},"record":<skip record>}
 *
 *   POST /v1/token/NAME/rejected[?min_ttl_ms=N]   body {"access_token":"<the refused token>"}
 *     A resource server refused that token (401): the same answers as GET, with a token other
 *     than the refused one. One refresh for every reporter of the same token (the manager's
 *     refreshAfterRejection, as the proxy uses on a 401); none if the run already moved on.
 *
 * Loopback only, secret compared in constant time, connectors limited to the run's. Every
 * request is bounded (token wait, header and request timeouts).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type Clock, timeoutSignal } from "../core/clock.js";
import {
  ConfigError,
  type ErrorCode,
  EXIT,
  exitCodeFor,
  isRetryable,
  isTokenkeeperError,
  ProtocolError,
  TokenkeeperError,
  TransientError,
} from "../core/errors.js";
import { Secret } from "../core/secret.js";
import type { TokenManager } from "../manager/token-manager.js";
import { recordTimes } from "../manager/view.js";
import type { FetchLike } from "../oauth/http.js";
import { type SkipRecord, skippedRecord } from "./skip-record.js";

export const RUN_ENV = {
  url: "TOKENKEEPER_RUN_URL",
  secret: "TOKENKEEPER_RUN_SECRET",
  connectors: "TOKENKEEPER_RUN_CONNECTORS",
} as const;

export const RUN_SECRET_HEADER = "tokenkeeper-run-secret";

export interface TokenEndpointOptions {
  manager: TokenManager;
  /** The only connectors this endpoint serves. */
  connectors: readonly string[];
  /** Bound on producing one token, refresh included (default 30 s). */
  tokenTimeoutMs?: number;
}

export interface TokenEndpoint {
  readonly url: string;
  /** The per-run secret. Given only to the child, through its environment. */
  readonly secret: string;
  /** The environment variables a child needs. */
  env(): Record<string, string>;
  close(): Promise<void>;
}

export interface RunTokenResponse {
  connector: string;
  access_token: string;
  token_type: string;
  expires_at: string | null;
  expires_in: number | null;
}

export async function startTokenEndpoint(options: TokenEndpointOptions): Promise<TokenEndpoint> {
  const { manager } = options;
  const clock = manager.clock;
  const secret = randomBytes(32).toString("hex");
  const secretDigest = digest(secret);
  const allowed = new Set(options.connectors);
  const tokenTimeoutMs = options.tokenTimeoutMs ?? 30_000;

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, 500, "", error, clock);
      else res.destroy();
    });
  });
  // Bounds on a slow or stuck client; a token wait itself is bounded by tokenTimeoutMs.
  server.headersTimeout = 10_000;
  server.requestTimeout = tokenTimeoutMs + 10_000;
  server.keepAliveTimeout = 5_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const presented = req.headers[RUN_SECRET_HEADER];
    if (typeof presented !== "string" || !timingSafeEqual(digest(presented), secretDigest)) {
      return sendError(res, 401, "", new ConfigError(`missing or wrong ${RUN_SECRET_HEADER} header`), clock);
    }
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const match = /^\/v1\/token\/([^/]+?)(\/rejected)?$/.exec(url.pathname);
    const reportsRejection = match?.[2] !== undefined;
    if (!match || req.method !== (reportsRejection ? "POST" : "GET")) {
      return sendError(res, 404, "", new ConfigError(`unknown request ${req.method} ${url.pathname}`), clock);
    }
    const name = decodeURIComponent(match[1]!);
    if (!allowed.has(name)) {
      const list = [...allowed].join(", ") || "none";
      return sendError(
        res,
        404,
        name,
        new ConfigError(
          `connector "${name}" is not part of this run (run connectors: ${list}); add --connector ${name} to \`tokenkeeper run\``,
          { connector: name },
        ),
        clock,
      );
    }
    const requested = Number(url.searchParams.get("min_ttl_ms") ?? "0");
    const minTtlMs = Number.isFinite(requested) && requested > 0 ? requested : 0;
    let rejected: Secret | undefined;
    if (reportsRejection) {
      rejected = await readRejectedBody(req);
      if (!rejected) {
        return sendError(
          res,
          400,
          name,
          new ConfigError('a rejection report needs the refused token as {"access_token":"…"}', {
            connector: name,
          }),
          clock,
        );
      }
    }

    // Give up when the client leaves, or after tokenTimeoutMs.
    const gone = new AbortController();
    res.on("close", () => gone.abort());
    const timeout = timeoutSignal(clock, tokenTimeoutMs, gone.signal);
    try {
      // The same one-refresh path as the proxy's 401 handling; then the usual decision.
      if (rejected) await manager.refreshAfterRejection(name, rejected, { signal: timeout.signal });
      const token = await manager.getAccessToken(name, {
        minTtlMs: manager.achievableMinTtlMs(name, minTtlMs),
        signal: timeout.signal,
      });
      const now = clock.now();
      const body: RunTokenResponse = {
        connector: name,
        access_token: token.token.reveal(),
        token_type: token.tokenType,
        expires_at: token.expiresAt === null ? null : new Date(token.expiresAt).toISOString(),
        expires_in: token.expiresAt === null ? null : Math.max(0, Math.floor((token.expiresAt - now) / 1000)),
      };
      send(res, 200, body);
    } catch (error) {
      const failure =
        timeout.signal.aborted && !isTokenkeeperError(error)
          ? new TransientError(`no token for "${name}" within ${tokenTimeoutMs} ms`, { connector: name })
          : error;
      sendError(res, statusFor(failure), name, failure, clock, manager);
    } finally {
      timeout.dispose();
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;

  return {
    url: base,
    secret,
    env: () => ({
      [RUN_ENV.url]: base,
      [RUN_ENV.secret]: secret,
      [RUN_ENV.connectors]: [...allowed].join(","),
    }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const MAX_REJECTION_BODY = 16 * 1024;

/** The refused token from a rejection report's JSON body (bounded), or undefined if there is none. */
async function readRejectedBody(req: IncomingMessage): Promise<Secret | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REJECTION_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { access_token?: unknown };
    const token = body?.access_token;
    return typeof token === "string" && token.length > 0 ? new Secret(token) : undefined;
  } catch {
    return undefined;
  }
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function statusFor(error: unknown): number {
  // The authorization server's tokens are dead on arrival (clock skew): a bad upstream answer.
  if (isTokenkeeperError(error) && error.code === "expired_on_arrival") return 502;
  switch (exitCodeFor(error)) {
    case EXIT.reauth:
      return 403;
    case EXIT.transient:
      return 503;
    case EXIT.config:
      return 404;
    default:
      return 500;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    .end(JSON.stringify(body));
}

function sendError(
  res: ServerResponse,
  status: number,
  name: string,
  error: unknown,
  clock: Clock,
  manager?: TokenManager,
): void {
  const skip = skippedRecord(name || "(none)", error, recordTimes(manager?.view(name), clock.now()));
  send(res, status, {
    error: {
      code: skip.code,
      retryable: isRetryable(error),
      message: skip.detail,
      ...(skip.reason ? { reason: skip.reason } : {}),
      ...(skip.action ? { action: skip.action } : {}),
    },
    record: skip,
  });
}

// ---- the child's side --------------------------------------------------------------------

export interface RunEndpointAddress {
  url: string;
  secret: string;
  connectors: string[];
}

/** The run endpoint this process was given by `tokenkeeper run`, if any. */
export function runEndpointFromEnv(env: NodeJS.ProcessEnv): RunEndpointAddress | undefined {
  const url = env[RUN_ENV.url];
  const secret = env[RUN_ENV.secret];
  if (!url || !secret) return undefined;
  const connectors = (env[RUN_ENV.connectors] ?? "").split(",").filter(Boolean);
  return { url, secret, connectors };
}

const KNOWN_CODES = new Set<ErrorCode>([
  "reauth_required",
  "transient",
  "invalid_config",
  "not_found",
  "protocol_error",
  "insecure_endpoint",
  "store_corrupt",
  "store_permission",
  "store_unavailable",
  "store_key",
  "lock_timeout",
  "conflict",
  "insufficient_scope",
  "login_failed",
  "expired_on_arrival",
  "cancelled",
]);

/**
 * Asks the parent `tokenkeeper run` for a token. Failures come back as TokenkeeperErrors with the
 * parent's code (so exit codes match), and the parent's skip record in `fields.record`.
 */
export async function fetchRunToken(
  address: RunEndpointAddress,
  name: string,
  options: {
    clock: Clock;
    fetch?: FetchLike;
    minTtlMs?: number;
    timeoutMs?: number;
    /** A token a resource server refused: report it, and get a newer one. */
    rejected?: Secret;
  },
): Promise<RunTokenResponse> {
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const timeoutMs = options.timeoutMs ?? 45_000;
  const path = `/v1/token/${encodeURIComponent(name)}${options.rejected ? "/rejected" : ""}`;
  const url = new URL(path, address.url);
  if (options.minTtlMs) url.searchParams.set("min_ttl_ms", String(Math.round(options.minTtlMs)));
  const timeout = timeoutSignal(options.clock, timeoutMs);
  let response: Response;
  let body: unknown;
  try {
    response = await fetchFn(
      url,
      options.rejected
        ? {
            method: "POST",
            headers: { [RUN_SECRET_HEADER]: address.secret, "content-type": "application/json" },
            body: JSON.stringify({ access_token: options.rejected.reveal() }),
            signal: timeout.signal,
          }
        : { headers: { [RUN_SECRET_HEADER]: address.secret }, signal: timeout.signal },
    );
    body = await response.json();
  } catch (error) {
    throw new TransientError(
      `the tokenkeeper run that started this process did not answer at ${address.url} (${error instanceof Error && error.name === "TimeoutError" ? `timed out after ${timeoutMs} ms` : "connection failed"})`,
      { connector: name },
    );
  } finally {
    timeout.dispose();
  }
  if (response.ok) {
    const ok = body as Partial<RunTokenResponse>;
    if (typeof ok.access_token !== "string" || ok.access_token.length === 0) {
      throw new ProtocolError("the run endpoint answered without a token", { connector: name });
    }
    return ok as RunTokenResponse;
  }
  const failure = (body ?? {}) as {
    error?: { code?: string; message?: string; reason?: string; action?: string };
    record?: SkipRecord;
  };
  const code = KNOWN_CODES.has(failure.error?.code as ErrorCode)
    ? (failure.error!.code as ErrorCode)
    : "protocol_error";
  throw new TokenkeeperError(code, failure.error?.message ?? `the run endpoint answered ${response.status}`, {
    connector: name,
    ...(failure.error?.reason ? { reason: failure.error.reason } : {}),
    ...(failure.error?.action ? { action: failure.error.action } : {}),
  });
}
