// Fault injection in front of the token endpoint: the ways a real token endpoint (or the proxy,
// gateway or network in front of it) misbehaves, on demand and countably.
import type { IncomingMessage } from "node:http";
import type { KoaContext, Next } from "oidc-provider";
import { recordIssuedInBody } from "../support/secret-scan.js";
import { peekForm } from "./form-body.js";
import { sleep } from "./http-util.js";

export type TokenFaultKind = "503" | "429" | "drop" | "slow" | "html" | "malformed";

export interface TokenFaultOptions {
  /** Retry-After seconds for "429" (default 1) and, when given, for "503". */
  retryAfterSeconds?: number;
  /** "slow": how long to wait before answering normally (default 2000). Infinity = never answer. */
  delayMs?: number;
  /**
   * Only requests with this grant_type match (e.g. "refresh_token"); others pass untouched and
   * do not use up the count. Either the wire value or the short name for the device grant.
   * (Needs a form body with Content-Length, which every OAuth client sends.)
   */
  grantType?: string;
  /**
   * Let oidc-provider process the request first, then break the response ("drop", "503",
   * "html", "malformed"). Models the nastiest real failure: the server rotated the refresh token
   * but the client never saw the new one.
   */
  afterProcessing?: boolean;
}

interface ArmedFault {
  remaining: number;
  kind: TokenFaultKind;
  opts: TokenFaultOptions;
}

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

export class TokenFaults {
  readonly #queue: ArmedFault[] = [];
  /** Aborted on close() so hanging "slow" requests let go. */
  readonly #closing = new AbortController();
  /** Aborted (and replaced) by dropHanging(): the never-answering requests held so far hang up. */
  #hanging = new AbortController();
  readonly #onInject: () => void;

  /** `onInject` is told about each request a fault takes over, as it happens. */
  constructor(onInject: () => void = () => {}) {
    this.#onInject = onInject;
  }

  /** Makes the next `count` matching token requests fail as `kind`. Calls queue up in order. */
  arm(count: number, kind: TokenFaultKind, opts: TokenFaultOptions = {}): void {
    if (count > 0) this.#queue.push({ remaining: count, kind, opts });
  }

  clear(): void {
    this.#queue.length = 0;
  }

  get pending(): number {
    return this.#queue.reduce((n, f) => n + f.remaining, 0);
  }

  close(): void {
    this.#closing.abort();
  }

  /** Hangs up every request held by a never-answering "slow" fault, as a gateway timing out would. */
  dropHanging(): void {
    this.#hanging.abort();
    this.#hanging = new AbortController();
  }

  /** Koa middleware; `ctx` is already known to be a POST to the token endpoint. */
  async handle(ctx: KoaContext, next: Next): Promise<void> {
    const fault = await this.#take(ctx.req);
    if (!fault) return next();
    this.#onInject();
    const { kind, opts } = fault;

    if (kind === "slow") {
      const delay = opts.delayMs ?? 2000;
      if (Number.isFinite(delay)) {
        // Answers normally after the delay even if the client gave up meanwhile: a real server
        // does not notice either, so the grant (and any rotation) still happens.
        await sleep(delay, this.#closing.signal);
        if (!this.#closing.signal.aborted) return next();
      } else {
        // Never answers: wait for the client to hang up (or the server to close).
        const gone = new AbortController();
        const onClose = () => gone.abort();
        ctx.req.socket.once("close", onClose);
        await sleep(delay, AbortSignal.any([this.#closing.signal, this.#hanging.signal, gone.signal]));
        ctx.req.socket.off("close", onClose);
      }
      ctx.respond = false;
      ctx.req.socket.destroy();
      return;
    }

    if (opts.afterProcessing) {
      await next();
      // Issued even though the client never sees them: on the record for the secret scan.
      recordIssuedInBody(ctx.body);
    }

    switch (kind) {
      case "drop":
        // No HTTP response at all, as when the server process dies or a proxy resets the link.
        ctx.respond = false;
        ctx.req.socket.destroy();
        return;
      case "503":
        ctx.status = 503;
        if (opts.retryAfterSeconds !== undefined) ctx.set("Retry-After", String(opts.retryAfterSeconds));
        ctx.set("Cache-Control", "no-store");
        ctx.body = { error: "temporarily_unavailable", error_description: "injected 503 (test bed)" };
        return;
      case "429":
        ctx.status = 429;
        ctx.set("Retry-After", String(opts.retryAfterSeconds ?? 1));
        ctx.set("Cache-Control", "no-store");
        ctx.body = { error: "rate_limited", error_description: "injected 429 (test bed)" };
        return;
      case "html":
        // What a load balancer in front of the AS typically answers: not JSON, not OAuth.
        ctx.status = 502;
        ctx.type = "text/html; charset=utf-8";
        ctx.body =
          "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>" +
          "<body><h1>502 Bad Gateway</h1><p>injected by the test bed</p></body></html>";
        return;
      case "malformed":
        ctx.status = 200;
        ctx.type = "application/json";
        ctx.set("Cache-Control", "no-store");
        ctx.body = '{"access_token":"eyJhbGciOiJSUzI1NiJ9.trunc';
        return;
    }
  }

  /** Pops one unit of the first armed fault whose filter matches this request, if any. */
  async #take(req: IncomingMessage): Promise<ArmedFault | undefined> {
    if (this.#queue.length === 0) return undefined;
    const needsGrantType = this.#queue.some((f) => f.opts.grantType !== undefined);
    const grantType = needsGrantType ? ((await peekForm(req))?.get("grant_type") ?? undefined) : undefined;
    const index = this.#queue.findIndex(
      (f) => f.opts.grantType === undefined || sameGrantType(f.opts.grantType, grantType),
    );
    const fault = this.#queue[index];
    if (!fault) return undefined;
    if (--fault.remaining <= 0) this.#queue.splice(index, 1);
    return fault;
  }
}

function sameGrantType(wanted: string, actual: string | undefined): boolean {
  if (actual === undefined) return false;
  return wanted === actual || (wanted === "device_code" && actual === DEVICE_GRANT);
}
