/**
 * The token manager: hands out access tokens that are valid for as long as the caller needs,
 * refreshing ahead of expiry, once per connector at a time in this process (single-flight) and
 * across processes and machines (the store's lock, then a re-read). The new token set is
 * durable in the store before anyone sees the new access token, so a crash can never lose a
 * rotated refresh token that the server already considers current.
 */
import { type Clock, systemClock } from "../core/clock.js";
import {
  ConfigError,
  ConflictError,
  LockTimeoutError,
  NotFoundError,
  ProtocolError,
  type ReauthReason,
  ReauthRequiredError,
  TokenkeeperError,
  TransientError,
} from "../core/errors.js";
import type { ConnectorRecord, ConnectorSettings, TokenSet } from "../core/record.js";
import type { Secret } from "../core/secret.js";
import type { FetchLike } from "../oauth/http.js";
import {
  clientCredentialsGrant,
  type GrantOutcome,
  InvalidTokenResponseError,
  refreshGrant,
  TokenEndpointError,
} from "../oauth/token-endpoint.js";
import type { Store, StoredRecord, StoreLock } from "../store/types.js";
import { updateRecord } from "../store/update.js";
import { EventHub, type EventListener, type TokenkeeperEvent } from "./events.js";
import { expiredOnArrivalError } from "./expired-on-arrival.js";
import { type Keeper, type KeeperOptions, startKeeper } from "./keeper.js";
import { saveLogin, saveLoginWith } from "./login-save.js";
import { reauthErrorFromRecord } from "./reauth.js";
import {
  backoffDelayMs,
  classifyOAuthError,
  DEFAULT_REFRESH_AHEAD_MS,
  DEFAULT_RETRY,
  freshness,
  type RetryPolicy,
  reauthAction,
} from "./refresh-policy.js";
import {
  afterLogin,
  afterRefresh,
  claimNotice,
  enterReauth,
  type NewLogin,
  type NoticeField,
  reauthEvent,
  reauthFromError,
  recordFailure,
  releaseNotice,
  sameRefreshToken,
  withSettings,
} from "./transitions.js";
import {
  achievableMinTtl,
  aheadMsFor,
  type ConnectorView,
  freshnessOf,
  type ViewPolicy,
  viewOf,
} from "./view.js";

export interface TokenManagerOptions {
  store: Store;
  clock?: Clock;
  fetch?: FetchLike;
  /** Upper bound of the refresh-ahead window (default 5 min; the window is also at most half the lifetime). */
  refreshAheadMs?: number;
  /** Timeout of each token-endpoint request (default 10 s; cut to the refresh's retry deadline, but never below 1 s once sent). */
  requestTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /**
   * The cross-process refresh lock: lease (default 30 s), how long to wait for it (default 20 s),
   * and the part of the lease kept free after a token request's timeout for saving its result
   * (default min(5 s, a quarter of the lease)). A token request is sent only while the lease has
   * more than that margin left, and its timeout is cut to what is left minus the margin.
   */
  lock?: { leaseMs?: number; waitMs?: number; marginMs?: number };
  /** Warn when the server's clock differs from ours by more than this (default 30 s). */
  skewWarnMs?: number;
  /** How often a connector in reauth_required state is re-read from the store, to notice a new login (default 1 s). */
  reauthRecheckMs?: number;
  /**
   * How often a healthy connector's cached record is compared with the store, in the background
   * (default 5 s; 0 turns it off): a newer token set written by another process — a login with
   * a new scope, a refresh elsewhere — is then used here too. Callers never wait for it.
   */
  storeRecheckMs?: number;
  /**
   * Refresh in the background when a token is still usable but inside its refresh-ahead window
   * (default true). A one-shot process (`tokenkeeper token`) sets false: it must exit as soon as
   * it has answered, and a refresh it started would either hold the exit up or, abandoned after
   * the request left, lose the rotated refresh token (the next use of the old one revokes the
   * grant). Long-running processes and `keepalive` refresh ahead instead.
   */
  backgroundRefresh?: boolean;
  /**
   * While refreshing is failing (a backoff sleep, or the cool-down after a refresh gave up), a
   * caller that needs a token may trigger one more request ("probe") when the last request
   * left at least this long ago, jittered to between half and all of it (default 2 s). So a
   * recovered server is noticed at the next call, not when the backoff ends; the request rate
   * stays bounded by the callers' demand. A server's Retry-After is still respected.
   */
  probeIntervalMs?: number;
  random?: () => number;
  onEvent?: EventListener;
  /** Test hooks. Not for production use. */
  hooks?: TokenManagerHooks;
}

export interface TokenManagerHooks {
  /**
   * Runs under the refresh lock right before the lease check that precedes every token request
   * (refresh or client-credentials grant): a test can pause the process here, as a stall would.
   */
  beforeTokenRequest?: (connector: string) => void | Promise<void>;
}

/** The shortest timeout worth sending a token request with (or the configured one, if shorter). */
const MIN_REQUEST_MS = 1_000;

/**
 * The shortest time before the caller's deadline worth starting a token request in. Shorter
 * than MIN_REQUEST_MS: a short --timeout (1 s) must still allow one attempt.
 */
const MIN_REQUEST_BEFORE_DEADLINE_MS = 100;

/**
 * A request that is sent gets at least this long (or the configured timeout, if shorter, and
 * never past the lease), even when the caller's deadline is nearer: a request cut after a few
 * hundred milliseconds is often answered by a server that already rotated the refresh token,
 * and the lost answer costs the whole grant. So the deadline stops new requests; a request in
 * flight may end up to this much after it.
 */
const MIN_SENT_REQUEST_MS = 1_000;

/** The lease ran out, or nearly, before a token request could be sent: nothing was sent. */
class LeaseTooShort extends Error {
  constructor(readonly leftMs: number) {
    super(`the refresh lock has ${Math.round(leftMs)} ms left, too little to send a token request`);
  }
}

export interface AccessToken {
  connector: string;
  token: Secret;
  tokenType: string;
  /** Epoch ms by the local clock; null when the server gave no lifetime. */
  expiresAt: number | null;
  scope?: string;
}

export interface GetTokenOptions {
  /**
   * The token must stay valid at least this long (ms). Capped by what the server grants: a
   * request longer than a just-issued token can satisfy is lowered (see achievableMinTtlMs).
   */
  minTtlMs?: number;
  signal?: AbortSignal;
  /**
   * Wait at most this long (ms) for a refresh, then fail with a transient error. The refresh
   * itself goes on (a request already sent is never abandoned: its answer may carry the only
   * copy of a rotated refresh token), and its result is saved and served to the next caller.
   */
  maxWaitMs?: number;
}

interface CacheEntry {
  stored: StoredRecord;
  /** When the entry was last read from or written to the store (local clock). */
  checkedAt: number;
  /** After a failed refresh: no new attempt before this time, callers get the failure at once. */
  cooldown?: { until: number; error: TokenkeeperError };
}

interface FlightOptions {
  minTtlMs: number;
  /** The access token a server rejected (401): refresh even if it looks fresh, unless the store already moved on. */
  rejected?: Secret;
  signal?: AbortSignal;
  /** One request and no retry: a caller's probe during a cool-down. */
  probe?: boolean;
}

export class TokenManager {
  readonly store: Store;
  readonly clock: Clock;
  readonly #fetch: FetchLike | undefined;
  readonly #refreshAheadMs: number;
  readonly #requestTimeoutMs: number;
  readonly #retry: RetryPolicy;
  readonly #leaseMs: number;
  readonly #lockWaitMs: number;
  readonly #leaseMarginMs: number;
  readonly #hooks: TokenManagerHooks;
  readonly #skewWarnMs: number;
  readonly #reauthRecheckMs: number;
  readonly #storeRecheckMs: number;
  readonly #rechecks = new Set<string>();
  readonly #random: () => number;
  readonly #backgroundRefresh: boolean;
  readonly #probeIntervalMs: number;
  /** Per connector: the earliest time a caller's need may trigger another request (see probeIntervalMs). */
  readonly #nextProbeAt = new Map<string, number>();
  /** Per connector: the backoff sleep of a running refresh, which a caller's need may cut short. */
  readonly #naps = new Map<string, { until: number; wake: AbortController }>();
  readonly #events = new EventHub();
  readonly #cache = new Map<string, CacheEntry>();
  readonly #flights = new Map<string, Promise<CacheEntry>>();
  /**
   * Token sets the server issued that the store refused to take (it was unreachable). The
   * refresh token they replaced is spent: refreshing with it again would look like reuse and
   * revoke the grant. The next attempt saves this set instead of asking the server again.
   */
  readonly #unsaved = new Map<
    string,
    { spent: TokenSet | null; next: ConnectorRecord; outcome: GrantOutcome }
  >();
  /**
   * Refresh tokens that got an invalid answer, with that answer: if the store could not record
   * the verdict, this process still never sends them again (and tries to record it once more).
   */
  readonly #answeredInvalid = new Map<string, { spent: TokenSet; error: InvalidTokenResponseError }>();
  #closed = false;

  constructor(options: TokenManagerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.#fetch = options.fetch;
    this.#refreshAheadMs = options.refreshAheadMs ?? DEFAULT_REFRESH_AHEAD_MS;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#leaseMs = options.lock?.leaseMs ?? 30_000;
    this.#lockWaitMs = options.lock?.waitMs ?? 20_000;
    this.#leaseMarginMs = options.lock?.marginMs ?? Math.min(5_000, this.#leaseMs / 4);
    if (this.#leaseMs - this.#leaseMarginMs < Math.min(this.#requestTimeoutMs, MIN_REQUEST_MS)) {
      throw new ConfigError(
        `the refresh lock's lease (${this.#leaseMs} ms) leaves no time for a token request after its ${this.#leaseMarginMs} ms margin`,
      );
    }
    this.#hooks = options.hooks ?? {};
    this.#skewWarnMs = options.skewWarnMs ?? 30_000;
    this.#reauthRecheckMs = options.reauthRecheckMs ?? 1_000;
    this.#storeRecheckMs = options.storeRecheckMs ?? 5_000;
    this.#random = options.random ?? Math.random;
    this.#backgroundRefresh = options.backgroundRefresh ?? true;
    this.#probeIntervalMs = options.probeIntervalMs ?? 2_000;
    if (options.onEvent) this.#events.subscribe(options.onEvent);
  }

  /** Observe events; returns an unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    return this.#events.subscribe(listener);
  }

  /**
   * An access token valid for at least `minTtlMs`. The hot path (a fresh token in memory) does
   * no I/O. Inside the refresh-ahead window the current token is returned at once and a refresh
   * runs in the background; only a token that would not last `minTtlMs` makes the caller wait.
   */
  async getAccessToken(connector: string, options: GetTokenOptions = {}): Promise<AccessToken> {
    let entry = this.#cache.get(connector);
    // First use in this process: one store read, then the same decision as for a cached token.
    if (!entry) entry = this.#remember(await this.#read(connector));
    const now = this.clock.now();

    // A grant known to be dead fails at once, even while the last access token has time left:
    // a revocation is a decision someone made, and a job failing now says so more clearly than
    // one failing a few minutes later. The store is re-read at most every reauthRecheckMs, so
    // a new login (in any process) is picked up.
    if (entry.stored.record.state.health === "reauth_required") {
      if (now - entry.checkedAt >= this.#reauthRecheckMs) entry = this.#remember(await this.#read(connector));
      const reauth = reauthErrorFromRecord(entry.stored.record);
      if (reauth) throw reauth;
    }

    if (this.#storeRecheckMs > 0 && now - entry.checkedAt >= this.#storeRecheckMs) this.#recheck(entry);

    const record = entry.stored.record;
    // The view's rules (view.ts), so a one-shot command that asks the view decides the same.
    const minTtlMs = achievableMinTtl(record, options.minTtlMs ?? 0, this.#viewPolicy());
    const state = freshnessOf(record, now, minTtlMs, this.#viewPolicy());
    if (state === "fresh") return this.#hand(entry);
    if (state === "usable") {
      if (!entry.cooldown || now >= entry.cooldown.until) this.#background(connector, minTtlMs);
      return this.#hand(entry);
    }
    // Stale: this caller needs a refresh. During a cool-down it gets the remembered failure at
    // once, unless a probe is due: then one request (shared by everyone who asks meanwhile)
    // tells whether the server is back, so a cool-down outlives the failure by at most the
    // probe interval.
    let probe = false;
    if (entry.cooldown && now < entry.cooldown.until && !this.#flights.has(connector)) {
      if (now < (this.#nextProbeAt.get(connector) ?? 0)) throw entry.cooldown.error;
      probe = true;
      this.#scheduleProbe(connector, now);
    }
    const flight = this.#flight(connector, {
      minTtlMs,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(probe ? { probe } : {}),
    });
    this.#hurry(connector);
    return this.#hand(await this.#bounded(flight, connector, options.maxWaitMs));
  }

  /**
   * Called when a resource server rejected `rejected` with 401 invalid_token: refresh now (once
   * for all callers that saw the same rejection) unless the store already holds a newer token.
   */
  async refreshAfterRejection(
    connector: string,
    rejected: Secret,
    options: { signal?: AbortSignal; maxWaitMs?: number } = {},
  ): Promise<AccessToken> {
    const flight = this.#flight(connector, {
      minTtlMs: 0,
      rejected,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    this.#hurry(connector);
    return this.#hand(await this.#bounded(flight, connector, options.maxWaitMs));
  }

  /**
   * After a server refused `rejected` (403 insufficient_scope, or a 401): the store's token when
   * it is another one — a person may have just run `login --scope` — else undefined. One store
   * read; never a refresh (a refresh keeps the scope, so it cannot fix a missing one).
   */
  async newerToken(connector: string, rejected: Secret): Promise<AccessToken | undefined> {
    const stored = await this.#read(connector);
    const tokens = stored.record.tokens;
    if (!tokens || tokens.accessToken.equals(rejected) || reauthErrorFromRecord(stored.record))
      return undefined;
    return this.#hand(this.#cache.get(connector) ?? this.#remember(stored));
  }

  /** Forces a refresh now (used by `keepalive` so idle refresh tokens do not lapse). */
  async refreshNow(connector: string, options: { signal?: AbortSignal } = {}): Promise<AccessToken> {
    const current = await this.#read(connector);
    const rejected = current.record.tokens?.accessToken;
    const entry = await this.#flight(connector, {
      minTtlMs: 0,
      ...(rejected ? { rejected } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return this.#hand(entry);
  }

  /** The record as last seen by this manager (no I/O), for status displays. */
  cached(connector: string): StoredRecord | undefined {
    return this.#cache.get(connector)?.stored;
  }

  // ---- the connector's lifecycle, for surfaces: a view, the record, a keeper ----------------

  /**
   * A pure view of the connector as this manager last saw it (no I/O; undefined before first
   * use): when a refresh is due, whether the token covers a run, whether a human is needed. It
   * uses this manager's refresh-ahead option, like every decision the manager makes.
   */
  view(connector: string): ConnectorView | undefined {
    const stored = this.#cache.get(connector)?.stored;
    return stored ? viewOf(stored.record, this.clock.now(), this.#viewPolicy()) : undefined;
  }

  /**
   * The record as this manager last saw it, without I/O (undefined before first use). For
   * callers that must answer synchronously: the MCP SDK reads a provider's `redirectUrl` and
   * `clientMetadata` as plain properties, and the proxy decides at once, while answering a
   * request, whether a sign-in can start. Anyone who can wait uses record() or look().
   */
  lastSeen(connector: string): ConnectorRecord | undefined {
    return this.#cache.get(connector)?.stored.record;
  }

  /**
   * Forgets everything held for the connector (record, cool-down) and reads the store again:
   * after a login made outside this manager (a sign-in the proxy opened, a login in another
   * process), so the next call works with the new grant at once instead of at the next
   * recheck. The forgetting happens on the call, before any await. Returns the new view.
   */
  async reload(connector: string): Promise<ConnectorView> {
    this.#cache.delete(connector);
    return this.look(connector);
  }

  /** The view after reading the store (NotFoundError when the connector does not exist). No refresh. */
  async look(connector: string): Promise<ConnectorView> {
    const stored = await this.#read(connector);
    return viewOf(stored.record, this.clock.now(), this.#viewPolicy());
  }

  /**
   * The connector's record, from this manager's memory or else the store (NotFoundError when
   * absent). No refresh. `fresh`: read the store even when the record is in memory.
   */
  async record(connector: string, options: { fresh?: boolean } = {}): Promise<ConnectorRecord> {
    const cached = this.#cache.get(connector)?.stored;
    if (cached && !options.fresh) return cached.record;
    return (await this.#read(connector)).record;
  }

  /**
   * Saves what a login produced through the MCP SDK's auth flow: `build` gets the record the
   * store holds now and returns the new tokens (see transitions.afterLogin). The same write as
   * every other login (login-save.ts: under the refresh lock, compare-and-set, rebuilt on
   * conflict), then the cached record is forgotten.
   */
  async saveLogin(
    connector: string,
    build: (current: ConnectorRecord) => NewLogin,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    try {
      await saveLoginWith(
        this.store,
        connector,
        (current) => {
          if (!current) throw new NotFoundError(connector, this.store.location);
          return afterLogin(current, build(current), this.clock.now());
        },
        undefined,
        { clock: this.clock, ...(options.signal ? { signal: options.signal } : {}) },
      );
    } finally {
      this.invalidate(connector);
    }
  }

  /**
   * Saves a login's complete record (an imported authorization, a login made elsewhere), merged
   * with whatever the store holds now (transitions.mergeLogin, written as login-save.ts says).
   * `expectedVersion`: the version the login started from, null when there was no connector.
   */
  async saveLoginRecord(
    fresh: ConnectorRecord,
    expectedVersion: number | null,
    options: { signal?: AbortSignal; note?: (line: string) => void } = {},
  ): Promise<StoredRecord> {
    try {
      const saved = await saveLogin(this.store, fresh, expectedVersion, { clock: this.clock, ...options });
      this.#remember(saved);
      return saved;
    } catch (error) {
      this.invalidate(fresh.name);
      throw error;
    }
  }

  /**
   * Changes the connector's own settings (manager/settings.ts) on its latest record,
   * compare-and-set (transitions.withSettings): a rotation meanwhile is never rolled back.
   * NotFoundError when the connector does not exist. Returns the settings as saved.
   */
  async updateSettings(
    connector: string,
    change: (settings: ConnectorSettings) => ConnectorSettings,
  ): Promise<ConnectorSettings> {
    const updated = await updateRecord(this.store, connector, (current) =>
      withSettings(current, change, this.clock.now()),
    );
    this.#remember(updated!);
    return updated!.record.settings;
  }

  /**
   * Claims a notification on the connector's latest record (transitions.claimNotice): `wanted`
   * sees that record and says whether this occasion still needs announcing. A compare-and-set,
   * so of every process noticing the same occasion exactly one claims it. True when this call did.
   */
  async claimNotice(
    connector: string,
    field: NoticeField,
    at: number,
    wanted: (current: ConnectorRecord) => boolean,
  ): Promise<boolean> {
    let claimed = false;
    const updated = await updateRecord(this.store, connector, (current) => {
      claimed = wanted(current);
      return claimed ? claimNotice(current, field, at) : null;
    });
    if (updated) this.#remember(updated);
    return claimed;
  }

  /** Gives a claim made at `at` back (nothing reached the human), unless it is no longer ours. */
  async releaseNotice(connector: string, field: NoticeField, at: number): Promise<void> {
    const updated = await updateRecord(this.store, connector, (current) => releaseNotice(current, field, at));
    if (updated) this.#remember(updated);
  }

  /** The names of every connector in the store. */
  connectors(): Promise<string[]> {
    return this.store.list();
  }

  /** The access token this manager last saw for the connector (what a "refresh past it" refers to). */
  currentToken(connector: string): Secret | undefined {
    return this.#cache.get(connector)?.stored.record.tokens?.accessToken;
  }

  /**
   * The min-TTL the connector's server can satisfy (see achievableMinTtlMs): getAccessToken
   * applies it; callers use it to say in advance that a request will be lowered.
   */
  achievableMinTtlMs(connector: string, minTtlMs: number): number {
    return achievableMinTtl(this.#cache.get(connector)?.stored.record, minTtlMs, this.#viewPolicy());
  }

  /** Keeps the connector fresh while asked (see keeper.ts); stop() or the signal ends it. */
  keep(connector: string, options: KeeperOptions = {}): Keeper {
    return startKeeper(this, connector, options);
  }

  #viewPolicy(): ViewPolicy {
    return { refreshAheadMs: this.#refreshAheadMs };
  }

  /** Forgets cached state, so the next call reads the store (after a login or logout elsewhere). */
  invalidate(connector?: string): void {
    if (connector === undefined) this.#cache.clear();
    else this.#cache.delete(connector);
  }

  /** Records that a human must act (e.g. a 403 insufficient_scope), notifying observers once per transition. */
  async markReauthRequired(
    connector: string,
    reason: ReauthReason,
    details: { serverError?: string; serverErrorDescription?: string; requiredScope?: string } = {},
  ): Promise<ReauthRequiredError> {
    const current = await this.#read(connector);
    return this.#enterReauth(current, reason, details);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#flights.values()]);
  }

  // ---- internals -----------------------------------------------------------------------

  #aheadMs(record: ConnectorRecord): number {
    return aheadMsFor(record, this.#viewPolicy());
  }

  #hand(entry: CacheEntry): AccessToken {
    const record = entry.stored.record;
    const tokens = record.tokens;
    if (!tokens)
      throw (
        reauthErrorFromRecord(entry.stored.record) ??
        new TransientError(`connector "${record.name}" has no token`, { connector: record.name })
      );
    return {
      connector: record.name,
      token: tokens.accessToken,
      tokenType: tokens.tokenType,
      expiresAt: tokens.expiresAt,
      ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
    };
  }

  /** Compares the cached record with the store, off the caller's path; a newer version replaces it. */
  #recheck(entry: CacheEntry): void {
    const connector = entry.stored.record.name;
    if (this.#rechecks.has(connector) || this.#closed) return;
    this.#rechecks.add(connector);
    entry.checkedAt = this.clock.now();
    this.store
      .get(connector)
      .then(
        (stored) => {
          const prior = this.#cache.get(connector)?.stored;
          if (stored && (!prior || (stored.version !== prior.version && supersedes(stored, prior))))
            this.#remember(stored);
        },
        () => {}, // a store hiccup: the cached token is still good; the next recheck tries again
      )
      .finally(() => this.#rechecks.delete(connector));
  }

  #background(connector: string, minTtlMs: number): void {
    if (!this.#backgroundRefresh || this.#flights.has(connector) || this.#closed) return;
    // Errors are recorded on the entry (cooldown) and reported as events; the caller already has a token.
    this.#flight(connector, { minTtlMs }).catch(() => {});
  }

  /**
   * The caller stops waiting after `maxWaitMs`; the refresh itself goes on, single-flight, and
   * close() still waits for it (bounded by its deadline), so its result is never lost.
   */
  async #bounded<T>(work: Promise<T>, connector: string, maxWaitMs: number | undefined): Promise<T> {
    if (maxWaitMs === undefined) return work;
    const stop = new AbortController();
    const expired = this.clock.sleep(Math.max(0, maxWaitMs), stop.signal).then(
      () => {
        throw new TransientError(
          `no token for "${connector}" within ${maxWaitMs} ms: the token endpoint is slow or failing; the refresh goes on in the background`,
          { connector, kind: "wait_bound" },
        );
      },
      () => new Promise<never>(() => {}),
    );
    try {
      return await Promise.race([work, expired]);
    } finally {
      stop.abort();
    }
  }

  /** The next probe may start a jittered probe interval after `from` (a failure, or a probe begun). */
  #scheduleProbe(connector: string, from: number, floorMs = 0): void {
    const next = from + Math.max(floorMs, Math.round(this.#probeIntervalMs * (0.5 + this.#random() / 2)));
    this.#nextProbeAt.set(connector, Math.max(next, this.#nextProbeAt.get(connector) ?? 0));
  }

  /** A caller needs a token now: cut a running refresh's backoff sleep short if a probe is due. */
  #hurry(connector: string): void {
    const nap = this.#naps.get(connector);
    const probeAt = this.#nextProbeAt.get(connector) ?? 0;
    if (!nap || probeAt >= nap.until) return;
    nap.until = Math.max(this.clock.now(), probeAt);
    nap.wake.abort();
  }

  /** A backoff sleep that #hurry may shorten; `signal` still cancels it. */
  async #nap(connector: string, delayMs: number, signal: AbortSignal | undefined): Promise<void> {
    const nap = { until: this.clock.now() + delayMs, wake: new AbortController() };
    this.#naps.set(connector, nap);
    try {
      for (let left = delayMs; left > 0; left = nap.until - this.clock.now()) {
        nap.wake = new AbortController();
        const wake = nap.wake.signal;
        try {
          await this.clock.sleep(left, signal ? AbortSignal.any([signal, wake]) : wake);
        } catch (error) {
          if (!wake.aborted || signal?.aborted) throw error;
        }
      }
    } finally {
      if (this.#naps.get(connector) === nap) this.#naps.delete(connector);
    }
  }

  /** Single-flight: concurrent callers for one connector share one refresh. */
  #flight(connector: string, options: FlightOptions): Promise<CacheEntry> {
    const existing = this.#flights.get(connector);
    if (existing) {
      return existing.then((entry) => this.#afterSharedFlight(connector, entry, options));
    }
    const flight = this.#refresh(connector, options).finally(() => this.#flights.delete(connector));
    this.#flights.set(connector, flight);
    return flight;
  }

  /** A caller that joined someone else's flight may need more (a longer TTL, or its token was rejected). */
  async #afterSharedFlight(
    connector: string,
    entry: CacheEntry,
    options: FlightOptions,
  ): Promise<CacheEntry> {
    const tokens = entry.stored.record.tokens;
    const replaced = options.rejected && tokens && !tokens.accessToken.equals(options.rejected);
    if (options.rejected && !replaced) return this.#flight(connector, options);
    if (
      freshness(tokens, this.clock.now(), options.minTtlMs, 0) === "stale" &&
      !justObtained(tokens, this.clock.now())
    ) {
      return this.#flight(connector, options);
    }
    return entry;
  }

  async #read(connector: string): Promise<StoredRecord> {
    let stored: StoredRecord | null;
    try {
      stored = await this.store.get(connector);
    } catch (error) {
      // The store is unreachable: keep serving a cached token that is still valid.
      const cached = this.#cache.get(connector);
      if (cached && error instanceof TokenkeeperError && error.code === "store_unavailable") {
        if (freshness(cached.stored.record.tokens, this.clock.now(), 0, 0) !== "stale") return cached.stored;
      }
      throw error;
    }
    if (!stored) {
      this.#cache.delete(connector);
      throw new NotFoundError(connector, this.store.location);
    }
    this.#remember(stored);
    return stored;
  }

  #remember(stored: StoredRecord, cooldown?: CacheEntry["cooldown"]): CacheEntry {
    const prior = this.#cache.get(stored.record.name);
    // Never move the cache backwards to an older version (a slow reader racing a fast writer).
    if (prior && !supersedes(stored, prior.stored) && !cooldown) return prior;
    // Re-reading the same version (a probe does) keeps the cool-down; a new version ends it.
    if (
      !cooldown &&
      prior?.cooldown &&
      prior.stored.version === stored.version &&
      prior.stored.record.createdAt === stored.record.createdAt
    )
      cooldown = prior.cooldown;
    const entry: CacheEntry = { stored, checkedAt: this.clock.now(), ...(cooldown ? { cooldown } : {}) };
    this.#cache.set(stored.record.name, entry);
    return entry;
  }

  /** Is what the store holds good enough for this flight, with no refresh? */
  #satisfied(stored: StoredRecord, options: FlightOptions): boolean {
    const tokens = stored.record.tokens;
    if (!tokens) return false;
    if (options.rejected) return !tokens.accessToken.equals(options.rejected);
    return freshness(tokens, this.clock.now(), options.minTtlMs, this.#aheadMs(stored.record)) === "fresh";
  }

  async #refresh(connector: string, options: FlightOptions): Promise<CacheEntry> {
    const started = this.clock.now();
    // Nothing on this path (lock wait, request, backoff) waits past the deadline. A probe makes
    // one attempt: its failure leaves the cool-down in place (see #recordFailure).
    const deadline = started + this.#retry.deadlineMs;
    const retryUntil = options.probe ? started : deadline;
    let attempt = 0;
    let rereadAfterInvalidGrant = false;
    let leaseRechecks = 0;
    for (;;) {
      // 1. Another process may have refreshed already: look before taking any lock.
      let stored = await this.#read(connector);
      // A token set that was dead on arrival stands for a while: another refresh would be as dead.
      const inReauth =
        reauthErrorFromRecord(stored.record) ?? expiredOnArrivalError(stored.record, this.clock.now());
      if (inReauth) throw inReauth;
      if (this.#satisfied(stored, options)) return this.#remember(stored);

      let lastError: TokenkeeperError;
      try {
        const lock = await this.store.lock(connector, {
          leaseMs: this.#leaseMs,
          waitMs: Math.max(0, Math.min(this.#lockWaitMs, deadline - this.clock.now())),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        try {
          // 2. Under the lock, read again: the previous holder may have just written new tokens.
          stored = await this.#read(connector);
          const reauth =
            reauthErrorFromRecord(stored.record) ?? expiredOnArrivalError(stored.record, this.clock.now());
          if (reauth) throw reauth;
          if (this.#satisfied(stored, options)) return this.#remember(stored);
          // 3. Exactly one refresher reaches the token endpoint.
          return await this.#grantAndPersist(stored, started, lock, deadline);
        } finally {
          await lock.release().catch(() => {});
        }
      } catch (error) {
        // The lease ran out before our request left (we stalled, or the store is slow): another
        // process may hold the lock now, or have refreshed already. Read again and decide again,
        // at once: this is not a failure of the server. Bounded, then it counts as one.
        if (error instanceof LeaseTooShort && ++leaseRechecks <= 3) continue;
        if (error instanceof LeaseTooShort) {
          lastError = new TransientError(`could not refresh "${connector}": ${error.message}`, {
            connector,
            kind: "lease",
          });
        } else if (error instanceof TokenEndpointError) {
          const verdict = classifyOAuthError(error.oauthError);
          if (verdict.kind === "permanent") {
            // RFC 6749 §6 + rotation: our refresh token may have been superseded by another
            // process between our read and the server's answer. Look once more before declaring
            // the grant dead.
            if (verdict.reason === "invalid_grant" && !rereadAfterInvalidGrant) {
              rereadAfterInvalidGrant = true;
              const latest = await this.#read(connector);
              if (!sameRefreshToken(latest.record.tokens, stored.record.tokens)) continue;
            }
            throw await this.#enterReauth(stored, verdict.reason, {
              serverError: error.oauthError,
              ...(error.description ? { serverErrorDescription: error.description } : {}),
            });
          }
          lastError = new TransientError(error.message, { connector, status: error.status, kind: "oauth" });
        } else if (
          error instanceof TransientError ||
          error instanceof LockTimeoutError ||
          error instanceof ConflictError
        ) {
          lastError = error;
        } else if (error instanceof TokenkeeperError && error.code === "store_unavailable") {
          lastError = error;
        } else {
          throw error;
        }
      }

      // 4. Transient failure: back off (outside the lock, so others may try), within the deadline.
      const now = this.clock.now();
      const retryAfter = lastError instanceof TransientError ? lastError.retryAfterMs : undefined;
      // A caller's probe comes no sooner than a probe interval after this failure, nor before
      // the server's Retry-After.
      this.#scheduleProbe(connector, now, retryAfter);
      const delay = backoffDelayMs(attempt, this.#retry, this.#random, retryAfter);
      if (now + delay > retryUntil || this.#closed) {
        await this.#recordFailure(connector, lastError, delay);
        throw lastError;
      }
      this.#emit({
        type: "retrying",
        connector,
        at: now,
        attempt: attempt + 1,
        delayMs: delay,
        error: {
          code: lastError.code,
          message: lastError.message,
          ...(typeof lastError.fields.status === "number" ? { status: lastError.fields.status } : {}),
        },
      });
      attempt++;
      await this.#nap(connector, delay, options.signal);
    }
  }

  async #grantAndPersist(
    stored: StoredRecord,
    started: number,
    lock: StoreLock,
    deadline: number,
  ): Promise<CacheEntry> {
    const record = stored.record;
    const unsaved = this.#unsaved.get(record.name);
    this.#unsaved.delete(record.name);
    if (unsaved && sameRefreshToken(record.tokens, unsaved.spent)) {
      // The store still holds the refresh token we already spent: save what the server gave us.
      return this.#persistAndAnnounce(stored, unsaved.next, unsaved.outcome, started);
    }
    const refreshable = record.grant === "client_credentials" || record.tokens?.refreshToken;
    if (!refreshable) throw await this.#enterReauth(stored, "no_refresh_token", {});
    const invalid = this.#answeredInvalid.get(record.name);
    if (invalid && sameRefreshToken(record.tokens, invalid.spent))
      return this.#afterInvalidAnswer(stored, invalid.error);
    const underLease = await this.#requestTimeoutUnder(lock);
    // The request's timeout also ends at the refresh's deadline: `--timeout 5s` means 5 s, not
    // 5 s plus one request timeout. Without a useful amount of time left it is not sent at all,
    // and one that is sent gets at least MIN_SENT_REQUEST_MS (a request abandoned after leaving
    // may have rotated the refresh token at the server).
    const beforeDeadline = deadline - this.clock.now();
    if (beforeDeadline < Math.min(this.#requestTimeoutMs, MIN_REQUEST_BEFORE_DEADLINE_MS))
      throw new TransientError(`no time left to refresh "${record.name}" before the deadline`, {
        connector: record.name,
        kind: "deadline",
      });
    const timeoutMs = Math.min(underLease, Math.max(beforeDeadline, MIN_SENT_REQUEST_MS));
    const deps = {
      clock: this.clock,
      timeoutMs,
      ...(this.#fetch ? { fetch: this.#fetch } : {}),
    };
    const outcome =
      record.grant === "client_credentials"
        ? await clientCredentialsGrant(record, deps)
        : await refreshGrant(record, deps).catch((error) => this.#afterInvalidAnswer(stored, error));

    const next = afterRefresh(record, outcome, this.clock.now());
    return this.#persistAndAnnounce(stored, next, outcome, started);
  }

  /**
   * The timeout for a token request sent now under `lock`; LeaseTooShort when none may be sent.
   * The store's version fences our *write*, not our *request*: a holder that stalled past its
   * lease (SIGSTOP, GC, a suspended VM) and then sent the refresh token would present one the
   * next holder already spent, and a rotating server revokes the whole grant on that reuse. So,
   * as the last step before sending, ask the store itself how much of the lease is left (our own
   * clock cannot see a take-over): the request and the save of its result must both end before
   * the lease does. The timeout is cut to fit, so we stop waiting for a slow answer while the
   * lease is still ours (an answer the server sent after that is lost: see "Known limit").
   */
  async #requestTimeoutUnder(lock: StoreLock): Promise<number> {
    await this.#hooks.beforeTokenRequest?.(lock.name);
    const leftMs = await lock.remainingMs();
    const timeoutMs = Math.min(this.#requestTimeoutMs, leftMs - this.#leaseMarginMs);
    if (timeoutMs < Math.min(this.#requestTimeoutMs, MIN_REQUEST_MS)) throw new LeaseTooShort(leftMs);
    return timeoutMs;
  }

  /**
   * A complete answer to our refresh that is not a valid token response: the server may have
   * rotated the refresh token before it broke its answer, so sending it again could look like
   * reuse and revoke the grant. Recorded durably (reauth_required), so no process sends it
   * again; this caller gets the protocol error (76) saying what was wrong.
   */
  async #afterInvalidAnswer(stored: StoredRecord, error: unknown): Promise<never> {
    if (!(error instanceof InvalidTokenResponseError)) throw error;
    if (stored.record.tokens)
      this.#answeredInvalid.set(stored.record.name, { spent: stored.record.tokens, error });
    const detail = String(error.fields.detail ?? error.message);
    const reauth = await this.#enterReauth(stored, "invalid_token_response", {
      serverErrorDescription: detail,
    });
    throw new ProtocolError(
      `${error.message}; the refresh token it answered may be spent and will not be sent again`,
      {
        ...error.fields,
        connector: stored.record.name,
        reason: "invalid_token_response",
        action: reauth.action,
      },
    );
  }

  async #persistAndAnnounce(
    stored: StoredRecord,
    next: ConnectorRecord,
    outcome: GrantOutcome,
    started: number,
  ): Promise<CacheEntry> {
    const record = stored.record;
    const now = this.clock.now();
    // Durable before anyone sees the new access token (rotation safety).
    let persisted: StoredRecord;
    try {
      persisted = await this.#persistRefreshed(stored, next);
    } catch (error) {
      if (!(error instanceof ConflictError))
        this.#unsaved.set(record.name, { spent: record.tokens, next, outcome });
      throw error;
    }
    const entry = this.#remember(persisted);
    const fresh = persisted.record;
    this.#emit({
      type: "refreshed",
      connector: record.name,
      at: now,
      expiresAt: fresh.tokens?.expiresAt ?? null,
      rotated: outcome.rotated,
      refreshCount: fresh.state.refreshCount,
      durationMs: now - started,
      grant: record.grant === "client_credentials" ? "client_credentials" : "refresh_token",
    });
    if (outcome.rotated)
      this.#emit({
        type: "rotated",
        connector: record.name,
        at: now,
        rotationCount: fresh.state.rotationCount,
      });
    if (outcome.skewMs !== undefined && Math.abs(outcome.skewMs) > this.#skewWarnMs) {
      this.#emit({ type: "skew_detected", connector: record.name, at: now, skewMs: outcome.skewMs });
    }
    // Saved (the rotated refresh token is safe), but not handed out: it is already expired.
    const deadOnArrival = expiredOnArrivalError(fresh, now);
    if (deadOnArrival) throw deadOnArrival;
    return entry;
  }

  /**
   * Compare-and-set the refreshed record. A conflict means someone wrote while we held the lock
   * (our lease ran out, or a non-refresh update such as a notification mark). If the stored
   * refresh token is still the one we just spent, nobody else refreshed: put our tokens on top
   * of their change. Otherwise their tokens are the newer truth and ours are discarded.
   */
  async #persistRefreshed(stored: StoredRecord, next: ConnectorRecord): Promise<StoredRecord> {
    let base = stored;
    for (let i = 0; i < 5; i++) {
      try {
        const version = await this.store.put(next.name, next, base.version);
        return { record: next, version };
      } catch (error) {
        if (!(error instanceof ConflictError)) {
          // A store outage right now would strand a rotated refresh token: try again a few
          // times within the lock's lease before giving up (the caller keeps the set unsaved).
          if (i < 4 && error instanceof TokenkeeperError && error.code === "store_unavailable") {
            await this.clock.sleep(250 * 2 ** i);
            continue;
          }
          throw error;
        }
        const latest = await this.store.get(next.name);
        if (!latest) throw new NotFoundError(next.name, this.store.location);
        if (
          !sameRefreshToken(latest.record.tokens, stored.record.tokens) ||
          latest.record.client.clientId !== stored.record.client.clientId
        ) {
          return latest;
        }
        next = {
          ...latest.record,
          tokens: next.tokens,
          state: { ...latest.record.state, ...next.state },
          updatedAt: next.updatedAt,
        };
        base = latest;
      }
    }
    throw new TransientError(
      `could not save the refreshed token set for "${next.name}": the store kept changing`,
      { connector: next.name },
    );
  }

  /** Records the reauth_required state durably so every process fails fast, and emits the event once. */
  async #enterReauth(
    stored: StoredRecord,
    reason: ReauthReason,
    details: { serverError?: string; serverErrorDescription?: string; requiredScope?: string },
  ): Promise<ReauthRequiredError> {
    const now = this.clock.now();
    const r = stored.record;
    const action = reauthAction(r.name, r.server.mcpUrl, r.grant, details.requiredScope ?? r.scope);
    const error = new ReauthRequiredError({ connector: r.name, reason, since: now, action, ...details });
    // One shape for the record, the error and the event (transitions.ts).
    const reauth = reauthFromError(error);
    let transitioned = false;
    try {
      const updated = await updateRecord(this.store, r.name, (current) => {
        // Unchanged when the same reason is recorded, or a newer login or refresh landed meanwhile.
        const next = enterReauth(current, reauth, now, r);
        // The last run decides: updateRecord runs this again after a conflict, and a run that
        // finds the state already recorded (or a newer login) must not leave an earlier "yes".
        transitioned = next !== null;
        return next;
      });
      if (updated) {
        this.#remember(updated);
        const existing = reauthErrorFromRecord(updated.record);
        if (!transitioned && existing) return existing;
      }
    } catch (storeError) {
      // Failing to record the state must not hide the verdict from the caller.
      void storeError;
    }
    if (transitioned) this.#emit(reauthEvent(reauth, now));
    return error;
  }

  async #recordFailure(connector: string, error: TokenkeeperError, cooldownMs: number): Promise<void> {
    const now = this.clock.now();
    this.#emit({
      type: "refresh_failed",
      connector,
      at: now,
      error: { code: error.code, message: error.message },
    });
    const cached = this.#cache.get(connector);
    // A failed probe keeps the cool-down it probed (it never shortens it to its own short backoff).
    const until = Math.max(now + cooldownMs, cached?.cooldown?.until ?? 0);
    if (cached) this.#cache.set(connector, { ...cached, cooldown: { until, error } });
    try {
      const updated = await updateRecord(this.store, connector, (current) =>
        recordFailure(current, error, now),
      );
      if (updated) this.#remember(updated, { until, error });
    } catch {
      // The store may be what failed; the event above already told observers.
    }
  }

  #emit(event: TokenkeeperEvent): void {
    this.#events.emit(event);
  }
}

/** A token obtained in the last second is as good as this server gives, whatever the caller asked. */
function justObtained(tokens: TokenSet | null | undefined, now: number): boolean {
  return Boolean(tokens && now - tokens.obtainedAt < 1_000);
}

export function createTokenManager(options: TokenManagerOptions): TokenManager {
  return new TokenManager(options);
}

/**
 * Is `next` at least as new as `prior`? Versions only grow for one connector; a connector that
 * was logged out and logged in again starts over at version 1, and its creation time tells.
 */
function supersedes(next: StoredRecord, prior: StoredRecord): boolean {
  return next.version >= prior.version || next.record.createdAt !== prior.record.createdAt;
}
