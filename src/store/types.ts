/**
 * The Store contract. Every backend (memory, file, Redis, PostgreSQL) implements exactly this,
 * and one conformance suite checks them all.
 *
 * Two primitives make rotation safe across processes and machines:
 * - a versioned compare-and-set write: a writer that read version N can only write if the
 *   stored version is still N. A lock holder that paused past its lease (SIGSTOP, GC pause,
 *   partition) therefore cannot overwrite a newer token set: its write is fenced by the version;
 * - a lock with a lease, so that one refresher at a time talks to the token endpoint and a
 *   holder that died does not block the others for longer than the lease.
 *
 * The version fences the *write*, not the *request*: a holder paused past its lease before its
 * refresh request left would still send a refresh token that the next holder has already
 * spent, and a rotating server revokes the grant on that reuse. So a holder asks the store
 * itself, right before sending, how much of its lease is left (remainingMs), and sends only
 * when the request and the save that follows fit in it.
 */
import type { ConnectorRecord } from "../core/record.js";

export interface StoredRecord {
  record: ConnectorRecord;
  /** Monotonic per connector; 1 after the first write. */
  version: number;
}

export interface GetOptions {
  /** Report damage without repairing it (default false). */
  readOnly?: boolean;
}

export interface LockOptions {
  /** How long the lock stays ours if we die or stall without releasing it. */
  leaseMs: number;
  /** How long to wait for a held lock before giving up with LockTimeoutError. */
  waitMs: number;
  signal?: AbortSignal;
}

export interface StoreLock {
  readonly name: string;
  /** Epoch ms (store's clock) after which others may take the lock. */
  readonly expiresAt: number;
  /** True while the lease has not run out by our clock. */
  held(): boolean;
  /**
   * How long the lease is still ours, in ms counted from this call, asked of the store itself
   * (Redis PTTL of our token, the lease row on the database's clock, the lock file's owner and
   * lease), never only of our own memory: 0 when the lease ran out, was taken over or released.
   * Also the last check before work whose result must be saved under the lock: it rejects
   * (StoreUnavailableError) when the store cannot answer or could not take that write now (the
   * file store: another process has held the connector's write lock for too long).
   */
  remainingMs(): Promise<number>;
  /** Gives the lock back; a no-op when the lease was lost to someone else. Never throws for a lost lease. */
  release(): Promise<void>;
}

export interface Store {
  /** A description safe for logs and `status` (no credentials, e.g. a password in a URL). */
  readonly location: string;
  /**
   * The record and its version, or null when there is none. A damaged record is a
   * StoreCorruptError; a store that repairs damage (the file store moves the file aside) does so
   * only when `readOnly` is not set, so an observer such as `status` changes nothing.
   */
  get(name: string, options?: GetOptions): Promise<StoredRecord | null>;
  /** Connector names, sorted. */
  list(): Promise<string[]>;
  /**
   * Compare-and-set: writes when the stored version equals `expectedVersion` (`null`: only
   * when absent). Returns the new version. Throws ConflictError otherwise. Durable on return.
   */
  put(name: string, record: ConnectorRecord, expectedVersion: number | null): Promise<number>;
  /** Removes the record (only at `expectedVersion` when given). Returns false when absent. */
  delete(name: string, expectedVersion?: number): Promise<boolean>;
  /** Takes the per-connector refresh lock. Throws LockTimeoutError after `waitMs`. */
  lock(name: string, options: LockOptions): Promise<StoreLock>;
  close(): Promise<void>;
}
