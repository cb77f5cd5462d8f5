/**
 * The one way Tokenkeeper talks HTTP to authorization servers: every request has a timeout
 * (by the injected clock), never follows redirects on its own, and reads at most `maxBytes`
 * of a response body. Failures come back as typed errors that never quote a secret.
 */
import { type Clock, timeoutSignal } from "../core/clock.js";
import { InsecureEndpointError, ProtocolError, TransientError } from "../core/errors.js";
import { scrubText } from "../core/secret.js";

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface HttpDeps {
  clock: Clock;
  /** Defaults to the global fetch. */
  fetch?: FetchLike;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** Largest response body accepted (default 1 MiB). */
  maxBytes?: number;
}

/** HttpDeps from the options callers carry (`requestTimeoutMs` there, `timeoutMs` here). */
export function httpDepsOf(deps: { clock: Clock; fetch?: FetchLike; requestTimeoutMs?: number }): HttpDeps {
  return {
    clock: deps.clock,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.requestTimeoutMs ? { timeoutMs: deps.requestTimeoutMs } : {}),
  };
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_BYTES = 1024 * 1024;

/** Names a URL for an error or event: origin and path, never the query (it may hold a code). */
export function describeUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    return `${u.origin}${u.pathname}`;
  } catch {
    return scrubText(String(url), 200);
  }
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/** HTTPS everywhere except loopback hosts (RFC 9700 §2.6; MCP authorization: "all endpoints MUST be HTTPS"). */
export function assertSecureUrl(url: string | URL, what: string): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw new ProtocolError(`${what} is not a valid URL: ${scrubText(String(url), 200)}`, { field: what });
  }
  if (u.protocol === "https:") return u;
  if (u.protocol === "http:" && isLoopbackHost(u.hostname)) return u;
  throw new InsecureEndpointError(describeUrl(u), what);
}

/**
 * A fetch with a timeout and a body-size bound. The returned Response is fully buffered,
 * so callers (and oauth4webapi) can read it without another wait.
 */
export function boundedFetch(deps: HttpDeps): FetchLike {
  const baseFetch = deps.fetch ?? globalThis.fetch;
  const timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBytes = deps.maxBytes ?? DEFAULT_MAX_BYTES;
  return async (input, init = {}) => {
    const url = input instanceof Request ? input.url : String(input);
    const where = describeUrl(url);
    const { signal, dispose } = timeoutSignal(deps.clock, timeoutMs, init.signal ?? undefined);
    try {
      let response: Response;
      try {
        response = await baseFetch(input, { redirect: "manual", ...init, signal });
      } catch (cause) {
        throw networkError(cause, where, timeoutMs, signal);
      }
      const body = await readBounded(response, maxBytes, where, timeoutMs, signal);
      return new Response(nullBodyStatus(response.status) ? null : body, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
    } finally {
      dispose();
    }
  };
}

function nullBodyStatus(status: number): boolean {
  return status === 204 || status === 205 || status === 304 || (status >= 100 && status < 200);
}

/**
 * Errors that mean the server's answer arrived but is malformed at the HTTP level: retrying
 * cannot help, it is the server's fault (undici refuses response headers over its limit, 16 KiB
 * by default, e.g. a 64 KiB WWW-Authenticate; and unparseable responses).
 */
const PROTOCOL_FAILURES: Record<string, string> = {
  UND_ERR_HEADERS_OVERFLOW: "response headers larger than the client accepts",
  HPE_HEADER_OVERFLOW: "response headers larger than the client accepts",
  UND_ERR_RES_EXCEEDED_MAX_SIZE: "a response larger than the client accepts",
  HPE_INVALID_HEADER_TOKEN: "an invalid response header",
  HPE_INVALID_CONSTANT: "a response that is not HTTP",
};

function networkError(
  cause: unknown,
  where: string,
  timeoutMs: number,
  signal: AbortSignal,
): TransientError | ProtocolError {
  const reason = signal.reason as { name?: string } | undefined;
  if (signal.aborted && reason?.name === "TimeoutError") {
    return new TransientError(`${where} did not answer within ${timeoutMs} ms`, {
      url: where,
      kind: "timeout",
      timeoutMs,
    });
  }
  const code = (cause as { cause?: { code?: string } })?.cause?.code;
  const malformed = code ? PROTOCOL_FAILURES[code] : undefined;
  if (malformed) {
    return new ProtocolError(`${where} sent ${malformed} (${code})`, {
      url: where,
      problem: "malformed_response",
      errno: code,
    });
  }
  return new TransientError(`could not reach ${where}${code ? ` (${code})` : ""}`, {
    url: where,
    kind: "network",
    ...(code ? { errno: code } : {}),
  });
}

async function readBounded(
  response: Response,
  maxBytes: number,
  where: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new ProtocolError(`${where} sent a response of ${declared} bytes; the limit is ${maxBytes}`, {
      url: where,
      field: "body",
    });
  }
  if (!response.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new ProtocolError(`${where} sent more than ${maxBytes} bytes; the limit is ${maxBytes}`, {
          url: where,
          field: "body",
        });
      }
      chunks.push(value);
    }
  } catch (cause) {
    if (cause instanceof ProtocolError) throw cause;
    // A connection dropped or timed out mid-body: the answer is lost, not wrong.
    throw networkError(cause, where, timeoutMs, signal);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/** Parses a Retry-After header (seconds or HTTP date, RFC 9110 §10.2.3) into ms from `now`. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
