// Small HTTP plumbing shared by the bed's servers and helpers.
import { createServer, type IncomingMessage, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Loopback only: the bed must never be reachable from another machine. */
export const HOST = "127.0.0.1";

/** Starts an HTTP server on 127.0.0.1 (port 0 = ephemeral) and resolves with the bound port. */
export async function listen(handler: RequestListener, port = 0): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  // A long keep-alive: closeServer() destroys idle sockets anyway, and a short one races a
  // client reusing the socket just as the server closes it (UND_ERR_SOCKET), a race a loaded
  // machine makes likely. Real servers' keep-alive races are answered by the proxy as -32031
  // without resending a possibly processed call; the bed should not add them at random.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * Stops accepting connections and destroys every open socket, including idle keep-alive ones
 * and long-lived SSE streams, so close() is quick rather than waiting for clients to hang up.
 */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/** Reads a whole request body (bounded, since the bed only ever receives small JSON or forms). */
export async function readBody(req: IncomingMessage, limit = 5 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) throw new Error("request body too large");
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** A minimal cookie jar for driving browser-style flows with fetch (name=value only, no scoping). */
export class CookieJar {
  readonly #cookies = new Map<string, string>();

  /** Records the Set-Cookie headers of a response (an empty value or past expiry deletes). */
  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = "", ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k = "", v = ""] = a.split("=");
        return k.trim().toLowerCase() === "expires" && Date.parse(v) <= Date.now();
      });
      if (value === "" || expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}
