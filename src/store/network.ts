/**
 * What the network stores (Redis, PostgreSQL) share (their URLs are parsed in store-url.ts):
 * the record codec they seal with, the lease lock
 * and its polling loop, the errors for a missing key or a missing driver, and NetworkStoreBase,
 * which builds the Store contract on the few primitives each server provides. One place, so the
 * two backends cannot drift apart on anything a user sees.
 */

import { type Clock, systemClock } from "../core/clock.js";
import {
  ConfigError,
  LockTimeoutError,
  StoreCorruptError,
  StoreKeyError,
  StoreUnavailableError,
} from "../core/errors.js";
import { randomHex } from "../core/random.js";
import { assertConnectorName, type ConnectorRecord } from "../core/record.js";
import {
  type Keyring,
  nextVersion,
  type RawRecordAccess,
  RecordCodec,
  type RotationReport,
  resealAll,
  Sealer,
} from "./sealing.js";
import type { LockOptions, Store, StoredRecord, StoreLock } from "./types.js";

// ---- sealing --------------------------------------------------------------------------------

/** The codec a network store reads and writes records with: sealing exactly when `encrypted`. */
export function codecFor(encrypted: boolean, keyring: Keyring | null, location: string): RecordCodec {
  const sealer = encrypted && keyring ? new Sealer(keyring, { where: location }) : null;
  return new RecordCodec(sealer, location);
}

export function missingKeyError(location: string): StoreKeyError {
  return new StoreKeyError(
    `${location} seals records at rest and needs a key: set TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE ` +
      "(`tokenkeeper store init` creates one), or add ?encrypt=false to the store URL to keep records unsealed",
    { store: location },
  );
}

/** Refuses rotation on a store opened with `encrypt=false`. */
export function assertSealing(encrypted: boolean, location: string): void {
  if (!encrypted) throw new ConfigError(`${location} was opened with encrypt=false; nothing to rotate`);
}

// ---- the refresh lock -----------------------------------------------------------------------

/** Lock polling: start fast (a release is usually imminent), back off to spare the server. */
export const LOCK_POLL_MIN_MS = 10;
export const LOCK_POLL_MAX_MS = 200;

/** A lease in whole milliseconds; ConfigError unless positive. */
export function leaseMsOf(leaseMs: number): number {
  const whole = Math.ceil(leaseMs);
  if (!(whole > 0)) throw new ConfigError(`lock lease must be positive, not ${leaseMs}`);
  return whole;
}

export interface PollForLockOptions {
  name: string;
  /** Bound on the whole wait; LockTimeoutError after it. */
  waitMs: number;
  signal?: AbortSignal | undefined;
  clock: Clock;
  /** The store's redacted location, for the timeout error. */
  store: string;
}

/**
 * Calls `attempt` until it returns a lock (non-null) or `waitMs` has passed, sleeping between
 * tries with a backoff from 10 ms to 200 ms. The first attempt always runs, so `waitMs: 0`
 * means "take it if free".
 */
export async function pollForLock<T>(
  options: PollForLockOptions,
  attempt: () => Promise<T | null>,
): Promise<T> {
  const { clock } = options;
  const deadline = clock.now() + options.waitMs;
  let pollMs = LOCK_POLL_MIN_MS;
  for (;;) {
    const lock = await attempt();
    if (lock !== null) return lock;
    const now = clock.now();
    if (now >= deadline) throw new LockTimeoutError(options.name, options.waitMs, { store: options.store });
    await clock.sleep(Math.min(pollMs, deadline - now), options.signal);
    pollMs = Math.min(LOCK_POLL_MAX_MS, Math.ceil(pollMs * 1.5));
  }
}

// ---- optional drivers -----------------------------------------------------------------------

/**
 * Imports an optional driver, turning "not installed" into a ConfigError that says how to
 * install it. Any other failure (a broken install) propagates as it is.
 */
export async function loadOptionalDriver<T>(
  load: () => Promise<T>,
  packageName: string,
  label: string,
): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") {
      throw new ConfigError(
        `the ${label} store needs the ${packageName} driver: run \`npm install ${packageName}\``,
      );
    }
    throw e;
  }
}

// ---- the shared Store implementation --------------------------------------------------------

/** The options every network store takes. */
export interface NetworkStoreOptions {
  /** Keys to seal records with. Required unless `encrypt` is false. */
  keyring?: Keyring | null;
  /** Seal records at rest (default true). Setting false is an explicit, documented opt-out. */
  encrypt?: boolean;
  clock?: Clock;
  /** Bound on establishing a connection (default 2000). */
  connectTimeoutMs?: number;
}

/**
 * The driver client (or pool) a network store creates on first use and shuts down once. After
 * close(), asking for it fails with StoreUnavailableError.
 */
export class LazyClient<T> {
  readonly #create: () => Promise<T>;
  readonly #location: string;
  #pending: Promise<T> | null = null;
  #closed = false;

  constructor(create: () => Promise<T>, location: string) {
    this.#create = create;
    this.#location = location;
  }

  /** The client, created on first use. */
  get(): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#pending ??= this.#create();
    return this.#pending;
  }

  /** A fresh client in place of one that can no longer reconnect. */
  renew(): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#pending = this.#create();
    return this.#pending;
  }

  /** Marks it closed; the client to shut down, or null when none came up. */
  async close(): Promise<T | null> {
    this.#closed = true;
    const pending = this.#pending;
    this.#pending = null;
    return pending ? pending.catch(() => null) : null;
  }

  #closedError(): StoreUnavailableError {
    return new StoreUnavailableError(`${this.#location} is closed`, { store: this.#location });
  }
}

/**
 * The Store contract on top of what a server provides: read one connector's stored text,
 * compare-and-set it, and take or drop a lease. Sealing, key rotation and the lock (polling,
 * handle, release) are written once here; a backend implements the primitives, list, delete,
 * migrate and close.
 */
export abstract class NetworkStoreBase implements Store {
  /** The URL with any password replaced by `***`, plus the backend's namespace when not the default. */
  readonly location: string;
  readonly encrypted: boolean;
  protected readonly clock: Clock;
  #keyring: Keyring | null;
  #codec: RecordCodec;

  /** `urlEncrypt`: the URL's `encrypt=` parameter (null when absent); `options.encrypt` wins over it. */
  protected constructor(location: string, options: NetworkStoreOptions, urlEncrypt: boolean | null) {
    this.location = location;
    this.encrypted = options.encrypt ?? urlEncrypt ?? true;
    this.#keyring = options.keyring ?? null;
    if (this.encrypted && !this.#keyring) throw missingKeyError(location);
    this.#codec = codecFor(this.encrypted, this.#keyring, location);
    this.clock = options.clock ?? systemClock;
  }

  abstract list(): Promise<string[]>;
  abstract delete(name: string, expectedVersion?: number): Promise<boolean>;
  /** Prepares the server (tables, or nothing but a round trip); what `store init` runs. */
  abstract migrate(): Promise<{ applied: number[]; current: number }>;
  abstract close(): Promise<void>;

  /** The stored (possibly sealed) text of one connector and its version, or null when absent. */
  protected abstract getRaw(name: string): Promise<{ text: string; version: number } | null>;
  /** Compare-and-set of the stored text (`null`: only when absent); ConflictError when it lost. */
  protected abstract putRaw(name: string, text: string, expectedVersion: number | null): Promise<number>;
  /**
   * One attempt to take the lease on `name` for `token`: the lease's end (epoch ms, by the
   * server's clock where the server keeps one, else `sentAt + leaseMs`), or null while another
   * holder's lease stands. `sentAt` is our clock just before the request was sent.
   */
  protected abstract takeLease(
    name: string,
    token: string,
    leaseMs: number,
    sentAt: number,
  ): Promise<number | null>;
  /** Removes the lease on `name` only if `token` still owns it. */
  protected abstract dropLease(name: string, token: string): Promise<void>;
  /**
   * How long the lease on `name` is still `token`'s, by the server's own reckoning (ms; 0 or less
   * when it ran out or belongs to someone else).
   */
  protected abstract leaseLeft(name: string, token: string): Promise<number>;

  async get(name: string): Promise<StoredRecord | null> {
    assertConnectorName(name);
    const raw = await this.getRaw(name);
    return raw ? { record: this.#codec.decode(name, raw.version, raw.text), version: raw.version } : null;
  }

  async put(name: string, record: ConnectorRecord, expectedVersion: number | null): Promise<number> {
    assertConnectorName(name);
    // Sealed for the version this write will get, so the blob cannot stand in for another one.
    const text = this.#codec.encode(name, nextVersion(expectedVersion), record);
    const version = await this.putRaw(name, text, expectedVersion);
    if (version !== nextVersion(expectedVersion)) {
      // A backend that numbers writes differently would make every record unreadable: say so now.
      throw new StoreCorruptError(
        `${this.location} gave connector "${name}" version ${version}, not ${nextVersion(expectedVersion)}; sealed records bind the version`,
        { connector: name, store: this.location },
      );
    }
    return version;
  }

  async lock(name: string, options: LockOptions): Promise<StoreLock> {
    assertConnectorName(name);
    const leaseMs = leaseMsOf(options.leaseMs);
    const token = randomHex(16);
    const poll = {
      name,
      waitMs: options.waitMs,
      signal: options.signal,
      clock: this.clock,
      store: this.location,
    };
    return pollForLock(poll, async () => {
      const sentAt = this.clock.now();
      const expiresAt = await this.takeLease(name, token, leaseMs, sentAt);
      return expiresAt === null ? null : this.#handle(name, token, expiresAt, sentAt + leaseMs);
    });
  }

  /**
   * `expiresAt` is the lease end by the server's clock; `held()` uses our own clock from the
   * moment we sent the request, which ends no later than the server's lease whatever the skew
   * between the two clocks. `remainingMs()` asks the server, and so also sees a lease that
   * someone else took over or deleted, which our clock cannot.
   */
  #handle(name: string, token: string, expiresAt: number, localExpiresAt: number): StoreLock {
    const clock = this.clock;
    let released = false;
    return {
      name,
      expiresAt,
      held: () => !released && clock.now() < localExpiresAt,
      remainingMs: async () => {
        if (released) return 0;
        const sentAt = clock.now();
        const serverLeft = await this.leaseLeft(name, token);
        // The server's answer counts from when it ran the command, which is after we sent it:
        // count it from the send (early by the round trip, never late), and never past the end
        // by our own clock either.
        const now = clock.now();
        return Math.max(0, Math.min(sentAt + serverLeft, localExpiresAt) - now);
      },
      release: async () => {
        if (released) return;
        released = true;
        try {
          await this.dropLease(name, token);
        } catch (e) {
          // Releasing is an optimisation: if the server is unreachable the lease runs out by
          // itself. Failing here would mask the outcome of the work done under the lock.
          if (!(e instanceof StoreUnavailableError)) throw e;
        }
      },
    };
  }

  /**
   * Makes `next` the keyring and re-seals every record under its current key (compare-and-set,
   * retried on conflict, so a refresh that lands meanwhile is re-sealed, not lost). `next`
   * should keep the old keys as previous keys until every machine has the new one.
   */
  async rotateKey(next: Keyring): Promise<RotationReport> {
    assertSealing(this.encrypted, this.location);
    const raw: RawRecordAccess = {
      list: () => this.list(),
      getRaw: (name) => this.getRaw(name),
      putRaw: (name, text, expected) => this.putRaw(name, text, expected),
    };
    const report = await resealAll(raw, this.#keyring!, next, { where: this.location });
    this.#keyring = next;
    this.#codec = codecFor(this.encrypted, next, this.location);
    return report;
  }
}
