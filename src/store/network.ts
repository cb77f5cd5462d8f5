/**
 * What the network stores (Redis, PostgreSQL) share: how their URLs carry Tokenkeeper's own
 * parameters and are shown without a password, the lock polling loop, the record codec they
 * seal with, and the errors for a missing key or a missing driver. One place, so the two
 * backends cannot drift apart on anything a user sees.
 */
import type { Clock } from "../core/clock.js";
import { ConfigError, LockTimeoutError, StoreKeyError } from "../core/errors.js";
import { type Keyring, RecordCodec, Sealer } from "./sealing.js";

// ---- URLs -----------------------------------------------------------------------------------

export interface StoreUrlSpec {
  /** "Redis", "PostgreSQL": for messages. */
  label: string;
  /** Accepted protocols, with the colon: `["redis:", "rediss:"]`. */
  protocols: readonly string[];
  /** An example for the "not a valid URL" message. */
  example: string;
}

/** Parses a store URL. ConfigError without echoing the text (it may hold a password). */
export function parseStoreUrl(text: string, spec: StoreUrlSpec): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`the ${spec.label} store URL is not a valid URL (expected ${spec.example})`);
  }
  if (!spec.protocols.includes(url.protocol)) {
    const accepted = spec.protocols.map((p) => `${p}//`).join(" or ");
    throw new ConfigError(`a ${spec.label} store URL starts with ${accepted}, not ${url.protocol}//`);
  }
  return url;
}

export interface StoreUrlParams {
  /** Tokenkeeper's own parameters by name (null when absent). */
  values: Record<string, string | null>;
  /** The `encrypt=` parameter: null when absent. */
  encrypt: boolean | null;
}

/**
 * Takes Tokenkeeper's own query parameters (`names`, plus `encrypt`) out of `url`, so that what
 * is left is exactly what the driver understands. `encrypt` must be `true` or `false`.
 */
export function takeStoreParams(url: URL, names: readonly string[]): StoreUrlParams {
  const values: Record<string, string | null> = {};
  for (const name of names) values[name] = url.searchParams.get(name);
  const encryptText = url.searchParams.get("encrypt");
  if (encryptText !== null && encryptText !== "true" && encryptText !== "false") {
    throw new ConfigError(
      `store URL parameter encrypt must be true or false, not "${encryptText.slice(0, 20)}"`,
    );
  }
  for (const name of [...names, "encrypt"]) url.searchParams.delete(name);
  return { values, encrypt: encryptText === null ? null : encryptText === "true" };
}

/** The user-info part of a redacted URL: `user:***@`, `user@` or nothing. Never the password. */
export function redactedUserInfo(url: URL): string {
  const user = url.username;
  return url.password ? `${user}:***@` : user ? `${user}@` : "";
}

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
