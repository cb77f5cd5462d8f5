/**
 * An in-process store for tests and for embedding where persistence is not wanted.
 * Records are kept encoded, so callers never share mutable objects with the store.
 */
import { type Clock, systemClock } from "../core/clock.js";
import { ConflictError, LockTimeoutError } from "../core/errors.js";
import { type ConnectorRecord, decodeRecord, encodeRecord } from "../core/record.js";
import type { LockOptions, Store, StoredRecord, StoreLock } from "./types.js";

interface LockEntry {
  id: number;
  expiresAt: number;
}

export class MemoryStore implements Store {
  readonly location = "memory:";
  readonly #clock: Clock;
  readonly #records = new Map<string, { text: string; version: number }>();
  readonly #locks = new Map<string, LockEntry>();
  #nextLockId = 1;
  /** How often a waiting locker looks again; small because everything is in-process. */
  readonly #pollMs: number;

  constructor(options: { clock?: Clock; pollMs?: number } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#pollMs = options.pollMs ?? 5;
  }

  async get(name: string): Promise<StoredRecord | null> {
    const entry = this.#records.get(name);
    if (!entry) return null;
    return { record: decodeRecord(entry.text, `memory:${name}`), version: entry.version };
  }

  async list(): Promise<string[]> {
    return [...this.#records.keys()].sort();
  }

  async put(name: string, record: ConnectorRecord, expectedVersion: number | null): Promise<number> {
    const current = this.#records.get(name);
    const actual = current?.version ?? null;
    if (actual !== expectedVersion) throw new ConflictError(name, expectedVersion, actual);
    const version = (actual ?? 0) + 1;
    this.#records.set(name, { text: encodeRecord(record), version });
    return version;
  }

  async delete(name: string, expectedVersion?: number): Promise<boolean> {
    const current = this.#records.get(name);
    if (!current) return false;
    if (expectedVersion !== undefined && current.version !== expectedVersion) {
      throw new ConflictError(name, expectedVersion, current.version);
    }
    this.#records.delete(name);
    return true;
  }

  async lock(name: string, options: LockOptions): Promise<StoreLock> {
    const deadline = this.#clock.now() + options.waitMs;
    for (;;) {
      const now = this.#clock.now();
      const held = this.#locks.get(name);
      if (!held || held.expiresAt <= now) {
        const entry = { id: this.#nextLockId++, expiresAt: now + options.leaseMs };
        this.#locks.set(name, entry);
        return this.#handle(name, entry);
      }
      if (now >= deadline) throw new LockTimeoutError(name, options.waitMs, { store: this.location });
      await this.#clock.sleep(Math.min(this.#pollMs, deadline - now), options.signal);
    }
  }

  #handle(name: string, entry: LockEntry): StoreLock {
    const clock = this.#clock;
    const locks = this.#locks;
    return {
      name,
      expiresAt: entry.expiresAt,
      held: () => locks.get(name)?.id === entry.id && clock.now() < entry.expiresAt,
      remainingMs: async () =>
        locks.get(name)?.id === entry.id ? Math.max(0, entry.expiresAt - clock.now()) : 0,
      release: async () => {
        if (locks.get(name)?.id === entry.id) locks.delete(name);
      },
    };
  }

  async close(): Promise<void> {}
}
