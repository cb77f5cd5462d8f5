/**
 * The loopback redirect listener for native apps (RFC 8252 §7.3): an HTTP server on
 * 127.0.0.1 only (§8.3: not "localhost", which may resolve elsewhere), on an ephemeral port
 * unless one is asked for. It accepts exactly one authorization response on its path, answers
 * the browser with a page saying it may close, and hands the parameters to the caller.
 *
 * Any local process can reach a loopback port, so a request the describer marks as not this
 * login's (`ignore`: a wrong or missing `state`) is answered with an error page and the wait goes
 * on: a forged request must not be able to end a login the person is still completing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Clock } from "../core/clock.js";
import { formatDuration } from "../core/duration.js";
import { ConfigError, LoginError, TokenkeeperError } from "../core/errors.js";

export const CALLBACK_PATH = "/callback";

export type CallbackHost = "127.0.0.1" | "localhost";
export const CALLBACK_HOSTS: readonly CallbackHost[] = ["127.0.0.1", "localhost"];

/** A callback path: absolute, no query or fragment, plain URL path characters. */
export function isCallbackPath(path: string): boolean {
  return /^\/[A-Za-z0-9._~\-/]{0,200}$/.test(path) && !path.includes("//");
}

export interface CallbackPage {
  ok: boolean;
  title: string;
  message: string;
  /** Not a response to this login (forged, or another attempt's): answer it and keep waiting. */
  ignore?: boolean;
}

export interface LoopbackOptions {
  /** 0 or absent: an ephemeral port chosen by the OS. */
  port?: number;
  path?: string;
  /**
   * The host written into the redirect URI: "127.0.0.1" (the default, RFC 8252 §7.3) or
   * "localhost", for a client registered with a localhost redirect (mcp-remote registers
   * http://localhost:PORT/oauth/callback). The listener binds 127.0.0.1 either way: the name
   * only has to match the registration; the socket stays on loopback.
   */
  host?: CallbackHost;
  /**
   * Judges the response before the browser is answered, so the page can tell the person
   * whether it worked. Called for each request on the callback path until one is not ignored
   * (a request with another login's state is answered and the wait goes on).
   */
  describe?: (params: URLSearchParams) => CallbackPage;
}

export interface LoopbackListener {
  readonly redirectUri: string;
  readonly port: number;
  /** Replaces the judge of the response (set once the login knows its state and issuer). */
  setDescriber(describe: (params: URLSearchParams) => CallbackPage): void;
  /** Resolves with the callback's query parameters; rejects on timeout or abort. */
  waitForCallback(options: {
    clock: Clock;
    timeoutMs: number;
    signal?: AbortSignal;
  }): Promise<URLSearchParams>;
  close(): Promise<void>;
}

export async function startLoopbackListener(options: LoopbackOptions = {}): Promise<LoopbackListener> {
  const path = options.path ?? CALLBACK_PATH;
  let received: URLSearchParams | undefined;
  /** Requests answered and ignored (wrong state): reported if the wait then times out. */
  let ignored = 0;
  let deliver: ((p: URLSearchParams) => void) | undefined;
  let describe = options.describe;

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== path)
      return respond(
        res,
        404,
        page({ ok: false, title: "Not found", message: "This is Tokenkeeper's login listener." }),
      );
    if (req.method !== "GET")
      return respond(
        res,
        405,
        page({
          ok: false,
          title: "Method not allowed",
          message: "Expected a redirect from the authorization server.",
        }),
      );
    if (received) {
      return respond(
        res,
        409,
        page({
          ok: false,
          title: "Already received",
          message: "Tokenkeeper already has a response for this login. You may close this window.",
        }),
      );
    }
    const verdict = safeDescribe(describe, url.searchParams);
    if (verdict.ignore) {
      ignored++;
      return respond(res, 400, page(verdict));
    }
    received = url.searchParams;
    respond(res, verdict.ok ? 200 : 400, page(verdict));
    deliver?.(url.searchParams);
  });
  server.keepAliveTimeout = 1000;
  server.headersTimeout = 10_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new ConfigError(
              `callback port ${options.port} on 127.0.0.1 is in use; choose another with --callback-port or omit it`,
              { port: options.port },
            )
          : error,
      );
    };
    server.once("error", onError);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const redirectUri = `http://${options.host ?? "127.0.0.1"}:${port}${path}`;

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closed;
  };

  return {
    redirectUri,
    port,
    close,
    setDescriber(fn) {
      describe = fn;
    },
    waitForCallback({ clock, timeoutMs, signal }) {
      return new Promise<URLSearchParams>((resolve, reject) => {
        if (received) return resolve(received);
        const stop = new AbortController();
        const finish = (fn: () => void) => {
          stop.abort();
          signal?.removeEventListener("abort", onAbort);
          deliver = undefined;
          fn();
        };
        const onAbort = () =>
          finish(() =>
            reject(
              new TokenkeeperError("cancelled", "login cancelled while waiting for the browser", {
                problem: "cancelled",
              }),
            ),
          );
        if (signal?.aborted) return onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
        deliver = (params) => finish(() => resolve(params));
        clock.sleep(timeoutMs, stop.signal).then(
          () =>
            finish(() =>
              reject(
                new LoginError(
                  `no authorization response reached ${redirectUri} within ${formatDuration(timeoutMs)}${
                    ignored > 0
                      ? ` (${ignored} request${ignored === 1 ? " without this login's state was" : "s without this login's state were"} ignored)`
                      : ""
                  }; open the printed URL in a browser on this machine (or use --device), and raise --timeout if you need longer`,
                  { problem: "callback_timeout", timeoutMs, ignoredRequests: ignored },
                ),
              ),
            ),
          () => {},
        );
      });
    },
  };
}

function safeDescribe(describe: LoopbackOptions["describe"], params: URLSearchParams): CallbackPage {
  if (!describe)
    return {
      ok: true,
      title: "Authorization received",
      message: "Tokenkeeper received the response. You may close this window.",
    };
  try {
    return describe(params);
  } catch {
    return {
      ok: false,
      title: "Login failed",
      message: "Tokenkeeper could not use this response; see the terminal. You may close this window.",
    };
  }
}

function respond(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    // The page shows nothing sensitive, but keep it from being framed or leaking the URL onwards.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    connection: "close",
  });
  res.end(html);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(p: CallbackPage): string {
  const color = p.ok ? "#1a7f37" : "#cf222e";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tokenkeeper: ${escapeHtml(p.title)}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;line-height:1.5">
<h1 style="color:${color};font-size:1.4rem">${escapeHtml(p.title)}</h1>
<p>${escapeHtml(p.message)}</p>
</body></html>
`;
}
