/**
 * The remote side of the proxy: one logical MCP session with a remote server, carried by the
 * SDK's own client transports (Streamable HTTP, or legacy HTTP+SSE for older servers) and kept
 * alive across what breaks sessions in practice:
 *
 * - the server forgets the session (restart, expiry): it answers 404 to our session id, and the
 *   MCP transport spec (2025-06-18, "Session Management") says the client MUST start a new
 *   session with a fresh InitializeRequest. We replay the client's own initialize, so the client
 *   never notices beyond the requests that were in flight, which fail with a clear error;
 * - the standalone GET stream (server-to-client messages) or the legacy SSE stream drops: we
 *   reopen it with exponential backoff and jitter, and stop retrying in the background after a
 *   deadline (the next client request tries again at once);
 * - a response stream ends without carrying the answer: reported per request id, so the bridge
 *   answers that request instead of letting the client wait forever.
 *
 * Messages are relayed at the transport level, untouched, so every method (including ones newer
 * than this code) passes. The only messages the proxy writes itself are the replayed initialize.
 */
import { setMaxListeners } from "node:events";
import { SSEClientTransport, SseError } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { backoffDelayMs, type RetryPolicy } from "../../core/backoff.js";
import type { Clock } from "../../core/clock.js";
import {
  isTokenkeeperError,
  ProtocolError,
  type TokenkeeperError,
  TransientError,
} from "../../core/errors.js";
import { describeUrl, type FetchLike } from "../../oauth/http.js";
import { watchBody } from "./body.js";
import { classifyUpstreamError, describeProblem, isMalformed, lossError, type RequestId } from "./errors.js";

export type TransportChoice = "streamable-http" | "sse" | "auto";
type TransportKind = "streamable-http" | "sse";

export interface UpstreamEvents {
  /** A message from the remote server for the client: responses, server requests, notifications. */
  message(message: JSONRPCMessage): void;
  /**
   * The exchanges carrying these requests ended; an answer that has not arrived yet never will.
   * "all": every request still outstanding (the legacy SSE stream carries all answers).
   */
  exchangeEnded(
    ids: readonly RequestId[] | "all",
    error: TokenkeeperError | ((method: string) => TokenkeeperError),
  ): void;
  /** The fetch layer hit an authorization failure (also on background streams no request waits for). */
  authFailure(error: TokenkeeperError): void;
  /** Lifecycle notes, never one per message. */
  log(level: "info" | "warn" | "debug", text: string): void;
}

export interface UpstreamOptions {
  url: URL;
  transport: TransportChoice;
  /** An authenticated fetch (createAuthFetch): it injects the token and handles 401s. */
  fetch: FetchLike;
  /** Extra headers sent with every request (the proxy's --header). */
  headers?: Record<string, string>;
  clock: Clock;
  random?: () => number;
  /** Bound on opening a transport and replaying initialize (default 30 s). */
  connectTimeoutMs?: number;
  /** Reconnection backoff of background streams; `deadlineMs` ends background retries (default 10 min). */
  reconnect?: Partial<RetryPolicy>;
  events: UpstreamEvents;
}

const DEFAULT_RECONNECT: RetryPolicy = { initialDelayMs: 500, maxDelayMs: 30_000, deadlineMs: 10 * 60_000 };
/** A stream that stayed up this long counts as healthy: the next drop starts the backoff afresh. */
const HEALTHY_STREAM_MS = 10_000;
/** A transport complaint this recent explains an answer that never came. */
const PROBLEM_RECENCY_MS = 5_000;
/** Bound on the DELETE that ends the session at shutdown. */
const TERMINATE_TIMEOUT_MS = 2_000;

/** One message on its way out: lets the fetch layer tie a POST (and its response stream) to request ids. */
interface Outgoing {
  id?: RequestId;
  /** `"id":<id>` as JSON.stringify writes it: a cheap check that a POST body is this message. */
  needle?: string;
  status?: number;
}

interface InitializeCall {
  id: RequestId;
  params: unknown;
}

interface Current {
  transport: Transport;
  kind: TransportKind;
  generation: number;
  started: boolean;
  /** Messages being sent on it right now. */
  inflight: number;
  /** Replaced after the server forgot the session: closed once what is in flight has settled. */
  retired: boolean;
}

export class Upstream {
  readonly where: string;
  readonly #url: URL;
  readonly #choice: TransportChoice;
  readonly #fetch: FetchLike;
  readonly #headers: Record<string, string>;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #connectTimeoutMs: number;
  readonly #reconnect: RetryPolicy;
  readonly #events: UpstreamEvents;

  #current: Current | undefined;
  #generation = 0;
  /** The kind that worked (auto resolves it on the first initialize). */
  #kind: TransportKind | undefined;
  /** The client's initialize, replayed to open a new session. */
  #init: InitializeCall | undefined;
  #protocolVersion: string | undefined;
  /** Holds other messages back while initialize (or initialized) is on its way. */
  #gate: Promise<void> | undefined;
  #releaseGate: (() => void) | undefined;
  #renewing: Promise<void> | undefined;
  readonly #outgoing: Outgoing[] = [];
  /** Our own requests (replayed initialize), answered to us rather than to the client. */
  readonly #internal = new Map<RequestId, (message: JSONRPCMessage) => void>();
  #internalSeq = 0;
  #lastProblem: { text: string; at: number } | undefined;

  // Background stream state: the Streamable HTTP GET stream, or the legacy SSE stream.
  #streamOpen = false;
  #streamOpenedAt = 0;
  #streamUnsupported = false;
  #attempt = 0;
  #downSince: number | undefined;
  #retry: AbortController | undefined;

  #suspended = false;
  #closed = false;

  constructor(options: UpstreamOptions) {
    this.#url = options.url;
    this.where = describeUrl(options.url);
    this.#choice = options.transport;
    this.#fetch = options.fetch;
    this.#headers = options.headers ?? {};
    this.#clock = options.clock;
    this.#random = options.random ?? Math.random;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
    this.#reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#events = options.events;
  }

  /** The transport in use ("streamable-http" or "sse"), once known. */
  get kind(): TransportKind | undefined {
    return this.#kind;
  }

  /** Messages handed to the transport and not yet sent (for stats: nothing grows with traffic). */
  get outgoing(): number {
    return this.#outgoing.length;
  }

  get sessionId(): string | undefined {
    return this.#current?.transport.sessionId;
  }

  get protocolVersion(): string | undefined {
    return this.#protocolVersion;
  }

  /**
   * Sends one client message. Resolves once the remote server accepted it (its answer, if any,
   * arrives through `events.message`); rejects with a typed error when it could not be delivered.
   */
  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) throw lossError("shutdown", { where: this.where, method: methodOf(message) });
    const method = methodOf(message);
    if (method === "initialize" && "id" in message) {
      const request = message as { id: RequestId; params?: unknown };
      return this.#initialize(request.id, request.params, message);
    }
    if (this.#gate) await this.#bounded(this.#gate, "waiting for the session to initialize");
    const current = await this.#ready();
    if (method === "notifications/initialized") {
      // Nothing else goes out before the server has seen initialized (MCP lifecycle, "Initialization").
      const done = this.#deliver(current, message, true);
      this.#gate = done.then(
        () => {},
        () => {},
      );
      try {
        await done;
      } finally {
        this.#gate = undefined;
      }
      return;
    }
    return this.#deliver(current, message, true);
  }

  /** Stops all traffic (a human must re-authorize first); `resume()` opens a new session later. */
  async suspend(reason: string): Promise<void> {
    this.#suspended = true;
    this.#cancelRetry();
    const current = this.#current;
    this.#current = undefined;
    if (current) {
      this.#events.log("info", `closing the connection to ${this.where}: ${reason}`);
      await this.#dispose(current);
    }
  }

  resume(): void {
    this.#suspended = false;
  }

  /** Ends the session politely (DELETE, bounded) and closes everything. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRetry();
    this.#releaseGate?.();
    const current = this.#current;
    this.#current = undefined;
    if (!current) return;
    if (current.transport instanceof StreamableHTTPClientTransport && current.transport.sessionId) {
      await this.#withTimeout(current.transport.terminateSession(), TERMINATE_TIMEOUT_MS).catch(() => {});
    }
    await this.#dispose(current);
  }

  // ---- initialize, sessions --------------------------------------------------------------------

  async #initialize(id: RequestId, params: unknown, message: JSONRPCMessage): Promise<void> {
    // A new initialize is a new session: whatever we had is over.
    if (this.#current) {
      const old = this.#current;
      this.#current = undefined;
      await this.#dispose(old);
    }
    this.#init = { id, params };
    let release!: () => void;
    this.#gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#releaseGate = () => {
      release();
      this.#gate = undefined;
      this.#releaseGate = undefined;
    };
    try {
      if (this.#choice === "sse") {
        await this.#deliver(await this.#open("sse"), message, false);
        return;
      }
      const current = await this.#open("streamable-http");
      const entry: Outgoing = {};
      try {
        await this.#deliver(current, message, false, entry);
      } catch (error) {
        // MCP transports, "Backwards Compatibility": a 400, 404 or 405 to the initialize POST
        // means an older server; it speaks HTTP+SSE with a GET on the same URL.
        if (
          this.#choice !== "auto" ||
          !(entry.status === 400 || entry.status === 404 || entry.status === 405)
        )
          throw error;
        this.#events.log(
          "info",
          `${this.where} answered HTTP ${entry.status} to Streamable HTTP; falling back to HTTP+SSE`,
        );
        this.#current = undefined;
        await this.#dispose(current);
        await this.#deliver(await this.#open("sse"), message, false);
      }
    } catch (error) {
      this.#releaseGate?.();
      throw error;
    }
  }

  /** The transport to send on, opening one (and a session) when there is none. */
  async #ready(): Promise<Current> {
    if (this.#renewing) await this.#renewing;
    if (this.#current) return this.#current;
    if (this.#suspended)
      throw new TransientError(`the connection to ${this.where} is suspended`, { kind: "suspended" });
    if (!this.#init) return this.#open(this.#kind ?? (this.#choice === "sse" ? "sse" : "streamable-http"));
    await this.#renew(this.#generation, "reconnecting");
    if (!this.#current) throw new TransientError(`could not reconnect to ${this.where}`, { url: this.where });
    return this.#current;
  }

  /**
   * Opens a new session and replays the client's initialize on it. Single-flight: a burst of
   * requests after a drop shares one attempt. Stale callers (an older generation) are ignored.
   */
  #renew(generation: number, why: string, sessionGone = false): Promise<void> {
    if (this.#renewing) return this.#renewing;
    if (generation !== this.#generation && this.#current) return Promise.resolve();
    const run = async () => {
      const old = this.#current;
      this.#current = undefined;
      // Messages already on their way to a forgotten session come back 404 and are sent again on
      // the new one; aborting them instead would leave their fate unknown.
      if (old && sessionGone) this.#retire(old);
      else if (old) await this.#dispose(old);
      if (this.#closed || this.#suspended || !this.#init) return;
      this.#events.log("info", `opening a new session with ${this.where} (${why})`);
      const current = await this.#open(this.#kind ?? "streamable-http");
      try {
        await this.#replayInitialize(current);
      } catch (error) {
        if (this.#current === current) this.#current = undefined;
        await this.#dispose(current);
        throw error;
      }
      this.#events.log(
        "info",
        `session re-established with ${this.where}${current.transport.sessionId ? "" : " (no session id)"}`,
      );
    };
    this.#renewing = run().finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  async #replayInitialize(current: Current): Promise<void> {
    const init = this.#init!;
    const id = `tokenkeeper-proxy-${++this.#internalSeq}`;
    const answered = new Promise<JSONRPCMessage>((resolve) => this.#internal.set(id, resolve));
    try {
      await this.#deliver(
        current,
        { jsonrpc: "2.0", id, method: "initialize", params: init.params } as JSONRPCMessage,
        false,
      );
      const answer = (await this.#bounded(answered, "waiting for the server to answer initialize")) as {
        result?: { protocolVersion?: string };
        error?: { message?: string };
      };
      if (!answer.result) {
        throw new ProtocolError(
          `${this.where} refused to start a new session: ${answer.error?.message ?? "no result"}`,
          { server: this.where },
        );
      }
      const version = answer.result.protocolVersion;
      if (version) {
        if (this.#protocolVersion && version !== this.#protocolVersion) {
          this.#events.log(
            "warn",
            `${this.where} now speaks protocol ${version} (the client negotiated ${this.#protocolVersion})`,
          );
        }
        current.transport.setProtocolVersion?.(version);
      }
    } finally {
      this.#internal.delete(id);
    }
    await this.#deliver(
      current,
      { jsonrpc: "2.0", method: "notifications/initialized" } as JSONRPCMessage,
      false,
    );
  }

  // ---- transports ------------------------------------------------------------------------------

  async #open(kind: TransportKind): Promise<Current> {
    const generation = ++this.#generation;
    const fetch = this.#trackingFetch(generation, kind);
    const requestInit: RequestInit = { headers: this.#headers };
    const transport: Transport =
      kind === "sse"
        ? new SSEClientTransport(this.#url, { fetch, requestInit })
        : new StreamableHTTPClientTransport(this.#url, {
            fetch,
            requestInit,
            // Reconnection is ours (see #scheduleReconnect): one policy for both transports, a
            // deadline, and session renewal when the server forgot us.
            reconnectionOptions: {
              maxRetries: 0,
              initialReconnectionDelay: 1_000,
              maxReconnectionDelay: 30_000,
              reconnectionDelayGrowFactor: 2,
            },
          });
    const current: Current = { transport, kind, generation, started: false, inflight: 0, retired: false };
    transport.onmessage = (message) => this.#fromServer(message, current);
    transport.onerror = (error) => this.#transportError(error, current);
    this.#current = current;
    this.#kind = kind;
    this.#streamOpen = false;
    this.#streamUnsupported = false;
    try {
      await this.#withTimeout(transport.start(), this.#connectTimeoutMs);
    } catch (error) {
      if (this.#current === current) this.#current = undefined;
      await this.#dispose(current);
      throw classifyUpstreamError(error, { where: this.where, method: "connect" });
    }
    current.started = true;
    if (kind === "sse") this.#streamUp();
    return current;
  }

  #retire(current: Current): void {
    current.retired = true;
    if (current.inflight === 0) void this.#dispose(current);
  }

  async #dispose(current: Current): Promise<void> {
    current.transport.onmessage = undefined;
    current.transport.onerror = undefined;
    if (current.generation === this.#generation) this.#cancelRetry();
    await current.transport.close().catch(() => {});
  }

  /** Sends on a transport; on a lost session, renews it and sends once more (the server never saw it). */
  async #deliver(
    current: Current,
    message: JSONRPCMessage,
    mayRenew: boolean,
    entry: Outgoing = {},
  ): Promise<void> {
    if ("method" in message && "id" in message) {
      const id = (message as { id: RequestId }).id;
      entry.id = id;
      entry.needle = `"id":${JSON.stringify(id)}`;
    }
    this.#outgoing.push(entry);
    current.inflight++;
    try {
      await current.transport.send(message);
    } catch (error) {
      const method = methodOf(message);
      // 404 to our session id: the server forgot the session and did not process this message,
      // so sending it again on a new session is safe (MCP transports, "Session Management").
      if (entry.status === 404 && this.#hadSession(current)) {
        if (!mayRenew || this.#closed || this.#suspended)
          throw lossError("session_lost", { where: this.where, method });
        if (current.generation === this.#generation)
          await this.#renew(current.generation, "the server no longer knows the session", true);
        return this.#deliver(await this.#ready(), message, false);
      }
      if (current.generation !== this.#generation || !this.#current) {
        // The transport was replaced under us: the session ended while this was on its way.
        throw isTokenkeeperError(error) ? error : lossError("session_lost", { where: this.where, method });
      }
      throw classifyUpstreamError(error, {
        where: this.where,
        method,
        ...(entry.status !== undefined ? { status: entry.status } : {}),
      });
    } finally {
      const at = this.#outgoing.indexOf(entry);
      if (at >= 0) this.#outgoing.splice(at, 1);
      if (--current.inflight === 0 && current.retired) void this.#dispose(current);
    }
    if (!this.#streamOpen && this.#retry) this.#reconnectNow(current);
  }

  #hadSession(current: Current): boolean {
    return current.kind === "sse" || current.transport.sessionId !== undefined;
  }

  /** Which outgoing message a POST carries: the oldest unclaimed one (sends reach fetch in order), checked by its id. */
  #claim(body: unknown): Outgoing | undefined {
    const head = this.#outgoing[0];
    if (!head) return undefined;
    if (!head.needle || typeof body !== "string" || body.includes(head.needle)) return this.#outgoing.shift();
    const at = this.#outgoing.findIndex((e) => e.needle !== undefined && body.includes(e.needle));
    return at >= 0 ? this.#outgoing.splice(at, 1)[0] : undefined;
  }

  /**
   * The fetch given to the SDK transport of one generation: the authenticated fetch, plus what
   * the proxy needs to see — which request ids a response stream carries and when it ends, the
   * state of the background stream, and a server that forgot our session.
   */
  #trackingFetch(generation: number, kind: TransportKind): FetchLike {
    return async (input, init) => {
      const method = init?.method ?? "GET";
      // The SDK gives every request the transport's one AbortSignal. fetch() leaves a listener
      // on it per request until garbage collection: thousands in a busy session. Each request
      // gets its own signal instead, linked to the transport's only while it is in flight.
      const link = linkSignal(init?.signal ?? undefined);
      const linkedInit = link ? { ...init, signal: link.signal } : init;
      // Sends; a request that fails drops its link, and an authorization failure is reported.
      const send = async (onError?: (error: unknown) => void): Promise<Response> => {
        try {
          return await this.#fetch(input, linkedInit);
        } catch (error) {
          link?.unlink();
          this.#fetchFailed(error);
          onError?.(error);
          throw error;
        }
      };
      if (method === "POST") {
        const entry = this.#claim(init?.body);
        const response = await send();
        if (entry) entry.status = response.status;
        if (!response.body) {
          link?.unlink();
          return response;
        }
        const id = response.ok && response.status !== 202 ? entry?.id : undefined;
        return watchBody(response, (error) => {
          link?.unlink();
          if (id !== undefined) this.#answerStreamEnded(generation, id, error);
        });
      }
      if (method === "GET") {
        const response = await send((error) => {
          if (kind === "streamable-http") this.#streamDown(generation, error);
        });
        if (kind === "sse") return watchBody(response, () => link?.unlink());
        if (response.ok) {
          this.#streamUp();
          return watchBody(response, (error) => {
            link?.unlink();
            this.#streamDown(generation, error);
          });
        }
        // A 404 means "session gone" only for a GET that named a session (MCP transports,
        // "Session Management"); without one, the server simply has no stream at this URL.
        const namedSession = new Headers(init?.headers).has("mcp-session-id");
        if (response.status === 405 || (response.status === 404 && !namedSession))
          this.#streamUnsupported = true;
        else if (response.status === 404) this.#sessionGone(generation);
        else this.#streamDown(generation, new Error(`HTTP ${response.status}`));
        return watchBody(response, () => link?.unlink());
      }
      try {
        const response = await this.#fetch(input, linkedInit);
        return watchBody(response, () => link?.unlink());
      } catch (error) {
        link?.unlink();
        throw error;
      }
    };
  }

  #fetchFailed(error: unknown): void {
    if (
      isTokenkeeperError(error) &&
      (error.code === "reauth_required" || error.code === "insufficient_scope")
    ) {
      this.#events.authFailure(error);
    }
  }

  /** A POST's response stream ended: any answer it should have carried and did not, never will. */
  #answerStreamEnded(generation: number, id: RequestId, error: unknown): void {
    if (error === undefined) {
      const problem = this.#recentProblem();
      this.#events.exchangeEnded([id], (method) =>
        lossError("no_answer", { where: this.where, method, ...(problem ? { lastProblem: problem } : {}) }),
      );
      return;
    }
    if (this.#closed) {
      this.#events.exchangeEnded([id], (method) => lossError("shutdown", { where: this.where, method }));
      return;
    }
    const replaced = generation !== this.#generation;
    this.#events.exchangeEnded([id], (method) =>
      lossError(replaced ? "session_lost" : "connection_lost", {
        where: this.where,
        method,
        cause: describeProblem(error),
      }),
    );
  }

  #fromServer(message: JSONRPCMessage, current: Current): void {
    if ("id" in message && !("method" in message)) {
      const id = (message as { id: RequestId }).id;
      const internal = this.#internal.get(id);
      if (internal) {
        internal(message);
        return;
      }
      if (this.#init && id === this.#init.id && current.generation === this.#generation) {
        const version = (message as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
        // The SDK Client does this after initialize; relaying raw messages, we must: every later
        // HTTP request carries MCP-Protocol-Version (MCP transports, "Protocol Version Header").
        if (typeof version === "string") {
          this.#protocolVersion = version;
          current.transport.setProtocolVersion?.(version);
        }
        this.#releaseGate?.();
      }
    }
    this.#events.message(message);
  }

  #transportError(error: Error, current: Current): void {
    if (isMalformed(error)) {
      this.#lastProblem = { text: describeProblem(error), at: this.#clock.now() };
      this.#events.log("warn", `${this.where} sent a malformed message: ${describeProblem(error)}`);
      return;
    }
    // The legacy SSE stream broke. Its EventSource would reconnect on its own into a new,
    // uninitialized session; we close it instead and renew the session properly.
    if (
      error instanceof SseError &&
      current.kind === "sse" &&
      current.started &&
      current.generation === this.#generation
    ) {
      if (this.#closed || this.#suspended) return;
      this.#current = undefined;
      // After this handler returns, EventSource arms its reconnect timer; closing on the next
      // microtask clears it.
      queueMicrotask(() => void this.#dispose(current));
      this.#events.exchangeEnded("all", (method) =>
        lossError("connection_lost", { where: this.where, method, cause: describeProblem(error) }),
      );
      this.#streamDown(current.generation, error, true);
      return;
    }
    this.#events.log("debug", `transport: ${describeProblem(error)}`);
  }

  #recentProblem(): string | undefined {
    const p = this.#lastProblem;
    if (!p || this.#clock.now() - p.at > PROBLEM_RECENCY_MS) return undefined;
    this.#lastProblem = undefined;
    return p.text;
  }

  // ---- the background stream and its reconnection --------------------------------------------

  #streamUp(): void {
    this.#streamOpen = true;
    this.#streamOpenedAt = this.#clock.now();
    if (this.#downSince !== undefined) this.#events.log("info", `stream from ${this.where} is back`);
    this.#downSince = undefined;
  }

  #streamDown(generation: number, error: unknown, sessionLost = false): void {
    const wasOpen = this.#streamOpen;
    this.#streamOpen = false;
    if (generation !== this.#generation || this.#closed || this.#suspended) return;
    const now = this.#clock.now();
    if (wasOpen && now - this.#streamOpenedAt >= HEALTHY_STREAM_MS) this.#attempt = 0;
    if (this.#downSince === undefined) {
      this.#downSince = now;
      const why = error === undefined ? "closed by the server" : describeProblem(error);
      this.#events.log("info", `stream from ${this.where} dropped (${why}); reconnecting with backoff`);
    }
    this.#scheduleReconnect(generation, sessionLost);
  }

  #sessionGone(generation: number): void {
    if (generation !== this.#generation || this.#closed || this.#suspended) return;
    this.#renew(generation, "the server no longer knows the session", true).catch((error) => {
      this.#events.log("warn", `could not open a new session: ${describeProblem(error)}`);
      this.#scheduleReconnect(this.#generation, true);
    });
  }

  #scheduleReconnect(generation: number, renew: boolean): void {
    if (this.#retry || this.#closed || this.#suspended) return;
    const now = this.#clock.now();
    if (this.#downSince !== undefined && now - this.#downSince > this.#reconnect.deadlineMs) {
      this.#events.log(
        "warn",
        `giving up background reconnection to ${this.where}; the next request will try again`,
      );
      return;
    }
    const delay = backoffDelayMs(this.#attempt++, this.#reconnect, this.#random);
    const retry = new AbortController();
    this.#retry = retry;
    this.#clock.sleep(delay, retry.signal).then(
      () => {
        if (this.#retry === retry) this.#retry = undefined;
        this.#reconnectAttempt(generation, renew);
      },
      () => {},
    );
  }

  #reconnectAttempt(generation: number, renew: boolean): void {
    if (this.#closed || this.#suspended) return;
    const current = this.#current;
    if (renew || !current || current.kind === "sse") {
      this.#renew(generation, "reconnecting").catch((error) => {
        this.#events.log("debug", `reconnect failed: ${describeProblem(error)}`);
        this.#scheduleReconnect(this.#generation, true);
      });
      return;
    }
    if (current.generation !== generation || this.#streamOpen || this.#streamUnsupported) return;
    // Outcomes are seen by the tracking fetch (up, 404, failure), which schedules what comes next.
    if (current.transport instanceof StreamableHTTPClientTransport)
      current.transport.resumeStream("").catch(() => {});
  }

  /** A request just got through while the stream is down: the server is back, do not wait out the backoff. */
  #reconnectNow(current: Current): void {
    if (!this.#retry || current.kind !== "streamable-http" || this.#streamUnsupported) return;
    this.#cancelRetry();
    this.#reconnectAttempt(current.generation, false);
  }

  #cancelRetry(): void {
    this.#retry?.abort();
    this.#retry = undefined;
  }

  // ---- bounds ----------------------------------------------------------------------------------

  #withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
    const stop = new AbortController();
    const timeout = this.#clock.sleep(ms, stop.signal).then(() => {
      throw new TransientError(`${this.where} did not answer within ${ms} ms`, {
        url: this.where,
        kind: "timeout",
      });
    });
    return Promise.race([promise, timeout]).finally(() => stop.abort());
  }

  #bounded<T>(promise: Promise<T>, what: string): Promise<T> {
    return this.#withTimeout(promise, this.#connectTimeoutMs).catch((error) => {
      throw isTokenkeeperError(error) && error.fields.kind === "timeout"
        ? new TransientError(`${what}: ${this.where} did not answer within ${this.#connectTimeoutMs} ms`, {
            url: this.where,
            kind: "timeout",
          })
        : error;
    });
  }
}

const unboundedSignals = new WeakSet<AbortSignal>();

/** A signal of its own for one request, aborted when `parent` aborts until `unlink()`. */
function linkSignal(
  parent: AbortSignal | undefined,
): { signal: AbortSignal; unlink: () => void } | undefined {
  if (!parent) return undefined;
  if (!unboundedSignals.has(parent)) {
    // One listener per request in flight (bounded by the proxy's pending limit), not a leak.
    setMaxListeners(0, parent);
    unboundedSignals.add(parent);
  }
  const own = new AbortController();
  if (parent.aborted) {
    own.abort(parent.reason);
    return { signal: own.signal, unlink: () => {} };
  }
  const onAbort = () => own.abort(parent.reason);
  parent.addEventListener("abort", onAbort, { once: true });
  return { signal: own.signal, unlink: () => parent.removeEventListener("abort", onAbort) };
}

function methodOf(message: JSONRPCMessage): string {
  return "method" in message && typeof message.method === "string" ? message.method : "response";
}
