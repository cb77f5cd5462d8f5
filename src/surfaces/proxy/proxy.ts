/**
 * `tokenkeeper proxy`: an MCP server on stdio for a local client (Claude Desktop, Claude Code,
 * Cursor…), bridged to a remote MCP server with tokens from the token manager.
 *
 * What it promises the client:
 * - every message passes both ways unchanged, relayed at the transport level (requests,
 *   notifications, server-to-client requests such as sampling, elicitation and roots);
 * - every request gets exactly one answer: the server's, or a JSON-RPC error saying what
 *   happened and what to do (docs/proxy.md lists the codes). Nothing waits forever: a stream
 *   that ends, a session the server forgot, a connection that drops, a re-authorization that a
 *   human must do — each answers the requests it affects at once;
 * - when a human must re-authorize, it never opens a browser on its own (only with
 *   `interactiveLogin`, which the CLI gives only with --interactive on a terminal). It writes the
 *   skip record to stderr, notifies, answers every request with the reason and the command to
 *   run, and notices the new login by itself;
 * - tokens are refreshed ahead while the session is in use (including a long call), never on a
 *   timer when idle; stdout carries only the protocol; nothing is logged per message; memory
 *   holds only what is in flight.
 */
import type { Readable, Writable } from "node:stream";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import type { RetryPolicy } from "../../core/backoff.js";
import type { Clock } from "../../core/clock.js";
import {
  EXIT,
  exitCodeFor,
  isRetryable,
  isTokenkeeperError,
  type ReauthRequiredError,
  type TokenkeeperError,
} from "../../core/errors.js";
import type { ConnectorRecord } from "../../core/record.js";
import { scrubText } from "../../core/secret.js";
import type { TokenkeeperEvent } from "../../manager/events.js";
import type { Keeper } from "../../manager/keeper.js";
import type { TokenManager } from "../../manager/token-manager.js";
import { reauthError, reauthFromEvent } from "../../manager/transitions.js";
import { recordTimes } from "../../manager/view.js";
import type { FetchLike } from "../../oauth/http.js";
import { createAuthFetch } from "../auth-fetch.js";
import type { Notifier } from "../notify.js";
import { type SkipRecord, skippedRecord } from "../skip-record.js";
import { describeProblem, errorResponse, lossError, PROXY_ERROR, type RequestId } from "./errors.js";
import { PendingRequests } from "./pending.js";
import { type BrowserSignIn, signInOpenError } from "./sign-in.js";
import { type TransportChoice, Upstream } from "./upstream.js";

export type { TransportChoice } from "./upstream.js";

export interface ResolvedTarget {
  connector: string;
  /** The remote MCP endpoint. */
  url: string;
  /** The server needs no authorization: relay without a token (no connector, no refresh). */
  open?: boolean;
  /** The connector's own token wait (its `proxy_token_wait` setting); ProxyOptions.tokenWaitMs wins. */
  tokenWaitMs?: number;
}

/**
 * How long a call waits for a token by default. A host (Claude Desktop, Cursor…) gives a call
 * tens of seconds before it times out on its own, with no reason given; a few seconds covers a
 * token endpoint's normal answer (and a probe after an outage) and leaves room to answer with
 * the real reason.
 */
export const DEFAULT_TOKEN_WAIT_MS = 3_000;

export interface ProxyOptions {
  manager: TokenManager;
  /**
   * Which connector and URL to use. Throws a TokenkeeperError (not_found, reauth_required…)
   * when it cannot say yet; the proxy then answers every request with that error and asks
   * again (at most once per `recheckMs`), so a `tokenkeeper login` is picked up without a restart.
   */
  resolve: () => Promise<ResolvedTarget>;
  transport?: TransportChoice;
  /** Extra headers for the remote server (--header). */
  headers?: Record<string, string>;
  /** The protocol channel to the local client. */
  stdin: Readable;
  stdout: Writable;
  /** Human-readable log lines (stderr). Never given a secret. */
  log: (line: string) => void;
  /** Each skip record: when a human must act (the CLI writes it to stderr as JSON and to the event log). */
  onSkip?: (record: SkipRecord) => void;
  /** Manager events, for the event log. */
  onEvent?: (event: TokenkeeperEvent) => void;
  notifier?: Notifier;
  /** Runs a login (opens a browser). Only given with --interactive on a terminal. */
  interactiveLogin?: (record: ConnectorRecord) => Promise<void>;
  /**
   * `--reauth browser`: the browser sign-in, once across the proxies of the connector
   * (sign-in.ts); calls meanwhile get reason `sign_in_open`. Never given to unattended commands.
   */
  signIn?: BrowserSignIn;
  clock: Clock;
  /** The network fetch under the authenticated one (tests inject faults here). */
  fetch?: FetchLike;
  /** Aborting shuts the proxy down cleanly (SIGTERM). */
  signal?: AbortSignal;
  /** Requests in flight before new ones are refused (default 10,000). */
  maxPending?: number;
  /** How often, at most, an unusable connector is checked again on a request (default 1 s). */
  recheckMs?: number;
  /**
   * How long a call waits for a token when one must be refreshed first (default: the
   * connector's own, ResolvedTarget.tokenWaitMs, else 3 s, DEFAULT_TOKEN_WAIT_MS). After it the call is answered with a transient error (-32031) while
   * the refresh goes on in the background: a host waits seconds, not a retry deadline.
   */
  tokenWaitMs?: number;
  connectTimeoutMs?: number;
  reconnect?: Partial<RetryPolicy>;
  /** Log transport details (still never per message, never secrets). */
  verbose?: boolean;
}

export interface ProxyOutcome {
  /** 0 after a normal end; 77 when it ended waiting for a re-authorization; 78 for a connector it never found. */
  exitCode: number;
  reason: "stdin_closed" | "signal" | "stdout_closed";
}

/** Ready; not usable (the state says why); or usable, but the token wait ended with this error. */
type Recovery = boolean | TokenkeeperError;

type State =
  | { kind: "unresolved"; error: TokenkeeperError }
  | { kind: "ready" }
  | { kind: "reauth"; error: TokenkeeperError }
  | { kind: "closed" };

export interface ProxyStats {
  /** Client requests awaiting an answer. */
  pending: number;
  /** Messages on their way to the remote server. */
  outgoing: number;
  state: State["kind"];
  /** Whether a refresh-ahead timer is set (none when idle). */
  refreshTimer: boolean;
  transport: string | undefined;
}

export interface ProxyHandle {
  /** Resolves when the proxy has shut down (stdin ended, signal, stdout closed). */
  done: Promise<ProxyOutcome>;
  stats(): ProxyStats;
}

/** Starts the proxy; it runs until stdin ends or `signal` aborts. */
export function startProxy(options: ProxyOptions): ProxyHandle {
  const proxy = new StdioProxy(options);
  return { done: proxy.run(), stats: () => proxy.stats() };
}

export function runProxy(options: ProxyOptions): Promise<ProxyOutcome> {
  return startProxy(options).done;
}

class StdioProxy {
  readonly #o: ProxyOptions;
  readonly #manager: TokenManager;
  readonly #clock: Clock;
  readonly #pending: PendingRequests;
  readonly #stdio: StdioServerTransport;
  readonly #recheckMs: number;
  #tokenWaitMs: number;
  #state: State = { kind: "unresolved", error: lossError("shutdown", { where: "", method: "start" }) };
  #target: ResolvedTarget | undefined;
  #upstream: Upstream | undefined;
  #recovering: Promise<Recovery> | undefined;
  #lastRecoveryAt = Number.NEGATIVE_INFINITY;
  #unsubscribe: (() => void) | undefined;
  /** Skip records already emitted for per-call problems (a missing scope), so each is reported once. */
  readonly #reportedScopes = new Set<string>();
  #loginRunning = false;
  // Refresh ahead while in use: the manager's keeper, asked while the session is used.
  #keeper: Keeper | undefined;
  #active = false;
  #finish!: (outcome: ProxyOutcome) => void;
  readonly #done: Promise<ProxyOutcome>;

  constructor(options: ProxyOptions) {
    this.#o = options;
    this.#manager = options.manager;
    this.#clock = options.clock;
    this.#pending = new PendingRequests(options.maxPending ?? 10_000);
    this.#recheckMs = options.recheckMs ?? 1_000;
    this.#tokenWaitMs = options.tokenWaitMs ?? DEFAULT_TOKEN_WAIT_MS;
    this.#stdio = new StdioServerTransport(options.stdin, options.stdout);
    this.#done = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  stats(): ProxyStats {
    return {
      pending: this.#pending.size,
      outgoing: this.#upstream?.outgoing ?? 0,
      state: this.#state.kind,
      refreshTimer: this.#keeper !== undefined,
      transport: this.#upstream?.kind,
    };
  }

  async run(): Promise<ProxyOutcome> {
    const { stdin, stdout, signal } = this.#o;
    this.#stdio.onmessage = (message) => this.#fromClient(message);
    this.#stdio.onerror = (error) =>
      this.#log(`ignored a message from the client that is not JSON-RPC: ${describeProblem(error)}`);
    stdin.once("end", () => void this.#shutdown("stdin_closed"));
    stdin.once("close", () => void this.#shutdown("stdin_closed"));
    // The client went away mid-write (EPIPE): nothing left to serve.
    stdout.on("error", () => void this.#shutdown("stdout_closed"));
    if (signal?.aborted) return { exitCode: EXIT.ok, reason: "signal" };
    signal?.addEventListener("abort", () => void this.#shutdown("signal"), { once: true });
    this.#unsubscribe = this.#manager.subscribe((event) => this.#onManagerEvent(event));
    await this.#stdio.start();
    // Resolve and check the connector now, so a dead one is reported at start (and the first
    // request does not pay for reading the store). Failing here is not fatal: we keep answering.
    await this.#attemptRecovery(true);
    return this.#done;
  }

  // ---- client → server -------------------------------------------------------------------------

  #fromClient(message: JSONRPCMessage): void {
    if (this.#state.kind === "closed") return;
    const isRequest = "method" in message && "id" in message;
    if (isRequest) {
      this.#onRequest(message as JSONRPCMessage & { id: RequestId; method: string });
      return;
    }
    if ("method" in message && message.method === "notifications/cancelled") {
      // The client gave up on it: the server is asked to stop, and no answer is owed.
      const requestId = (message.params as { requestId?: RequestId } | undefined)?.requestId;
      if (requestId !== undefined) this.#pending.take(requestId);
    }
    if (this.#state.kind !== "ready" || !this.#upstream) return;
    this.#touch();
    this.#upstream.send(message).catch((error) => {
      if (this.#o.verbose)
        this.#log(
          `could not forward a ${"method" in message ? message.method : "response"}: ${describeProblem(error)}`,
        );
      this.#noticeAuthFailure(error);
    });
  }

  #onRequest(message: JSONRPCMessage & { id: RequestId; method: string }): void {
    const { id, method } = message;
    if (!this.#pending.add(id, method, this.#clock.now())) {
      const why = this.#pending.has(id)
        ? `a request with id ${JSON.stringify(id)} is already in flight`
        : `${this.#pending.limit} requests are already in flight`;
      this.#answer({
        jsonrpc: "2.0",
        id,
        error: { code: PROXY_ERROR.refused, message: `tokenkeeper proxy: refused "${method}": ${why}` },
      });
      return;
    }
    if (this.#state.kind === "ready" && this.#upstream) {
      this.#forward(message);
      return;
    }
    // Not usable right now: see whether a login happened meanwhile, else answer at once.
    void this.#attemptRecovery(false).then((ok) => {
      // Usable, but no token came within the token wait: this call has had its wait.
      if (isTokenkeeperError(ok)) this.#failOne(id, ok);
      else if (ok) this.#forward(message);
      else this.#failOne(id, this.#currentError());
    });
  }

  #forward(message: JSONRPCMessage & { id: RequestId }): void {
    this.#touch();
    this.#upstream!.send(message).catch((error) => this.#failOne(message.id, error));
  }

  // ---- server → client -------------------------------------------------------------------------

  #fromServer(message: JSONRPCMessage): void {
    if ("id" in message && !("method" in message)) {
      // An answer nobody waits for (already answered with an error, or cancelled) is dropped:
      // the client must never see two answers to one request.
      if (!this.#pending.take((message as { id: RequestId }).id)) return;
    }
    this.#touch();
    this.#answer(message);
  }

  #answer(message: JSONRPCMessage): void {
    this.#stdio.send(message).catch(() => {});
  }

  /** The exchange carrying these requests ended; answer whichever are still waiting once queued messages are delivered. */
  #exchangeEnded(
    ids: readonly RequestId[] | "all",
    error: TokenkeeperError | ((method: string) => TokenkeeperError),
  ): void {
    const affected = ids === "all" ? this.#pending.ids() : ids;
    if (affected.length === 0) return;
    // The SDK transport parses what it already read on later microtasks; let it deliver first.
    setImmediate(() => {
      for (const id of affected) {
        const pending = this.#pending.take(id);
        if (!pending) continue;
        const e = typeof error === "function" ? error(pending.method) : error;
        this.#answer(errorResponse(id, e, this.#dataFor(e)));
      }
    });
  }

  #failOne(id: RequestId, error: unknown): void {
    const typed = this.#typed(error);
    this.#noticeAuthFailure(typed);
    const pending = this.#pending.take(id);
    if (!pending) return;
    this.#answer(errorResponse(id, typed, this.#dataFor(typed)));
  }

  // ---- re-authorization ------------------------------------------------------------------------

  #noticeAuthFailure(error: unknown): void {
    if (!isTokenkeeperError(error)) return;
    if (error.code === "reauth_required" && (error as ReauthRequiredError).reason === "insufficient_scope") {
      // A step-up for this one call; the connector keeps working for the others. Report once per scope.
      const scope = String(error.fields.requiredScope ?? "");
      if (this.#reportedScopes.has(scope) || this.#reportedScopes.size > 100) return;
      this.#reportedScopes.add(scope);
      this.#emitSkip(error);
      return;
    }
    if (error.code === "reauth_required") this.#enterReauth(error);
  }

  #enterReauth(error: TokenkeeperError): void {
    if (this.#state.kind === "closed" || this.#state.kind === "reauth") return;
    this.#state = { kind: "reauth", error };
    this.#stopRefreshAhead();
    this.#emitSkip(error);
    const target = this.#target;
    if (target) this.#o.notifier?.notifyReauth(this.#manager, target.connector).catch(() => {});
    for (const pending of this.#pending.drain())
      this.#answer(errorResponse(pending.id, error, this.#dataFor(error)));
    void this.#upstream?.suspend("re-authorization required");
    this.#maybeLogin();
  }

  #maybeLogin(): void {
    const record = this.#target ? this.#manager.lastSeen(this.#target.connector) : undefined;
    const signIn = this.#o.signIn;
    if (signIn && record) {
      // Once per episode: entering the reauth state again (after a failed sign-in, a later
      // revocation) is what opens it again, never a request.
      signIn.start(record).then(
        (outcome) => {
          if (outcome === "signed_in") {
            // The sign-in saved a new grant: the manager drops the dead one now and reads the
            // new one (a failed read is retried by the next request, which reads the store).
            this.#manager.reload(record.name).catch(() => {});
            this.#lastRecoveryAt = Number.NEGATIVE_INFINITY;
            this.#log(`--reauth browser: signed in to "${record.name}"; the next request reconnects`);
          } else if (outcome === "elsewhere") {
            this.#log(
              `--reauth browser: another proxy of "${record.name}" has the sign-in page open; this one resumes when it completes`,
            );
          } else {
            this.#log(
              `--reauth browser: the sign-in for "${record.name}" did not complete; run \`tokenkeeper login\` or restart the client`,
            );
          }
        },
        (e) => this.#log(`--reauth browser: ${describeProblem(e)}`),
      );
      return;
    }
    const login = this.#o.interactiveLogin;
    if (!login || !record || this.#loginRunning) return;
    this.#loginRunning = true;
    this.#log(`--interactive: starting a login for "${record.name}" in the browser`);
    login(record)
      .then(
        () => {
          this.#manager.reload(record.name).catch(() => {});
          this.#lastRecoveryAt = Number.NEGATIVE_INFINITY;
          this.#log("login finished; the next request reconnects");
        },
        (e) => this.#log(`the interactive login failed: ${describeProblem(e)}`),
      )
      .finally(() => {
        this.#loginRunning = false;
      });
  }

  /**
   * Leaves the unresolved or reauth state when a login happened meanwhile. Single-flight, and
   * at most once per recheckMs: a client hammering a dead connector gets answers from memory.
   */
  #attemptRecovery(force: boolean): Promise<Recovery> {
    if (this.#state.kind === "ready") return Promise.resolve(true);
    if (this.#state.kind === "closed") return Promise.resolve(false);
    if (this.#recovering) return this.#recovering;
    const now = this.#clock.now();
    if (!force && now - this.#lastRecoveryAt < this.#recheckMs) return Promise.resolve(false);
    this.#lastRecoveryAt = now;
    this.#recovering = this.#recover().finally(() => {
      this.#recovering = undefined;
    });
    return this.#recovering;
  }

  async #recover(): Promise<Recovery> {
    const wasReauth = this.#state.kind === "reauth";
    try {
      if (!this.#target) {
        this.#target = await this.#o.resolve();
        this.#tokenWaitMs = this.#o.tokenWaitMs ?? this.#target.tokenWaitMs ?? DEFAULT_TOKEN_WAIT_MS;
        this.#upstream = this.#newUpstream(this.#target);
        this.#log(
          `proxying stdio to ${this.#upstream.where} ${this.#target.open ? "without authorization" : `with connector "${this.#target.connector}"`}`,
        );
      }
      // Not just a token: liveAccessToken also says when the store marks the grant dead (a
      // token the server rejected can still look fresh).
      if (!this.#target.open)
        await this.#manager.getAccessToken(this.#target.connector, { maxWaitMs: this.#tokenWaitMs });
    } catch (error) {
      const typed = this.#typed(error);
      if (isRetryable(typed)) {
        // The token endpoint or store is having a moment: requests will retry through the fetch path.
        if (this.#target && this.#state.kind !== "reauth") {
          this.#log(`could not get a token yet (${typed.message}); requests will retry`);
          this.#state = { kind: "ready" };
          return typed;
        }
      }
      if (!this.#target) {
        if (this.#state.kind !== "unresolved" || this.#state.error.message !== typed.message) {
          this.#state = { kind: "unresolved", error: typed };
          this.#emitSkip(typed);
        }
      } else if (typed.code === "reauth_required") {
        this.#enterReauth(typed);
      } else {
        this.#state = { kind: "unresolved", error: typed };
        this.#emitSkip(typed);
      }
      return false;
    }
    if (this.#state.kind === "closed") return false;
    this.#state = { kind: "ready" };
    if (wasReauth) {
      this.#log(`connector "${this.#target.connector}" is authorized again; reconnecting`);
      this.#upstream?.resume();
    }
    return true;
  }

  #currentError(): TokenkeeperError {
    const s = this.#state;
    if (s.kind === "reauth" && this.#target) {
      const open = this.#o.signIn?.view();
      if (open) return signInOpenError(this.#target.connector, open, this.#clock.now());
    }
    if (s.kind === "unresolved" || s.kind === "reauth") return s.error;
    return lossError("shutdown", { where: this.#upstream?.where ?? "", method: "request" });
  }

  #newUpstream(target: ResolvedTarget): Upstream {
    const o = this.#o;
    const fetch = target.open
      ? (o.fetch ?? ((input, init) => globalThis.fetch(input, init)))
      : createAuthFetch(this.#manager, target.connector, {
          maxWaitMs: this.#tokenWaitMs,
          ...(o.fetch ? { fetch: o.fetch } : {}),
        });
    return new Upstream({
      url: new URL(target.url),
      transport: o.transport ?? "auto",
      fetch,
      ...(o.headers ? { headers: o.headers } : {}),
      clock: this.#clock,
      ...(o.connectTimeoutMs !== undefined ? { connectTimeoutMs: o.connectTimeoutMs } : {}),
      ...(o.reconnect ? { reconnect: o.reconnect } : {}),
      events: {
        message: (message) => this.#fromServer(message),
        exchangeEnded: (ids, error) => this.#exchangeEnded(ids, error),
        authFailure: (error) => this.#noticeAuthFailure(error),
        log: (level, text) => {
          if (level !== "debug" || o.verbose) this.#log(text);
        },
      },
    });
  }

  // ---- tokens: refresh ahead while in use ------------------------------------------------------

  #onManagerEvent(event: TokenkeeperEvent): void {
    this.#o.onEvent?.(event);
    if (!this.#target || event.connector !== this.#target.connector) return;
    if (event.type === "reauth_required") {
      // A refresh (ours or another process's) found the grant dead: tell the client now, not
      // at the next request that happens to need a new token.
      this.#enterReauth(reauthError(reauthFromEvent(event)));
    }
  }

  /** Something happened in the session: keep its token fresh ahead of need. */
  #touch(): void {
    this.#active = true;
    if (!this.#keeper && this.#state.kind === "ready") this.#armRefreshAhead();
  }

  /**
   * The manager's keeper refreshes when the token enters its refresh-ahead window, if the
   * session was used since the last time (or a call is still running); an idle session lets it
   * end, and the next message starts a new one.
   */
  #armRefreshAhead(): void {
    if (!this.#target || this.#target.open || this.#state.kind !== "ready") return;
    this.#active = false;
    const keeper = this.#manager.keep(this.#target.connector, {
      wanted: () => {
        const used = this.#state.kind === "ready" && (this.#active || this.#pending.size > 0);
        this.#active = false;
        return used;
      },
      onReport: (report) => {
        if (report.kind === "reauth") this.#noticeAuthFailure(report.error);
      },
    });
    this.#keeper = keeper;
    void keeper.done.then(() => {
      if (this.#keeper === keeper) this.#keeper = undefined;
    });
  }

  #stopRefreshAhead(): void {
    void this.#keeper?.stop();
    this.#keeper = undefined;
  }

  // ---- records and logs ------------------------------------------------------------------------

  #typed(error: unknown): TokenkeeperError {
    if (isTokenkeeperError(error)) return error;
    return lossError("no_answer", {
      where: this.#upstream?.where ?? "",
      method: "request",
      lastProblem: describeProblem(error),
    });
  }

  #skipRecord(error: TokenkeeperError): SkipRecord {
    const connector = this.#target?.connector ?? error.connector ?? "unknown";
    const view = this.#target ? this.#manager.view(this.#target.connector) : undefined;
    return skippedRecord(connector, error, recordTimes(view, this.#clock.now()));
  }

  /** The `data` of an error answer: the skip record, which a client or a human can act on. */
  #dataFor(error: TokenkeeperError): SkipRecord {
    return this.#skipRecord(error);
  }

  #emitSkip(error: TokenkeeperError): void {
    const record = this.#skipRecord(error);
    const action = record.action && !record.detail.includes(record.action) ? ` → ${record.action}` : "";
    this.#log(`${record.status}: ${record.detail}${action}`);
    this.#o.onSkip?.(record);
  }

  #log(line: string): void {
    this.#o.log(`tokenkeeper proxy: ${scrubText(line, 2_000)}`);
  }

  // ---- shutdown --------------------------------------------------------------------------------

  async #shutdown(reason: ProxyOutcome["reason"]): Promise<void> {
    const previous = this.#state;
    if (previous.kind === "closed") return;
    this.#state = { kind: "closed" };
    this.#stopRefreshAhead();
    this.#unsubscribe?.();
    // On SIGTERM the client may still be reading: answer what is in flight. Once stdin has
    // ended, nobody is.
    const stopping = lossError("shutdown", { where: this.#upstream?.where ?? "", method: "request" });
    for (const pending of this.#pending.drain()) {
      if (reason === "signal") this.#answer(errorResponse(pending.id, stopping, this.#dataFor(stopping)));
    }
    this.#log(
      `shutting down (${reason === "signal" ? "signal" : reason === "stdin_closed" ? "the client closed stdin" : "stdout closed"})`,
    );
    await this.#upstream?.close().catch(() => {});
    await this.#stdio.close().catch(() => {});
    const exitCode =
      previous.kind === "reauth"
        ? exitCodeFor(previous.error)
        : previous.kind === "unresolved"
          ? exitCodeFor(previous.error)
          : EXIT.ok;
    this.#finish({ exitCode, reason });
  }
}
