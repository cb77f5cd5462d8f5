/**
 * Opens a store from a URL, and copies connectors between stores.
 *
 *   file:///path/to/dir                 FileStore (the default: the state directory)
 *   redis://[user:pass@]host:port/db    RedisStore  (rediss:// for TLS; ?prefix=…)
 *   postgres://user:pass@host:port/db   PostgresStore (postgresql:// too; ?schema=…)
 *
 * Network stores seal records with the keyring from TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE;
 * `?encrypt=false` on the URL explicitly stores them unsealed (tests, or a server encrypted by
 * other means). The URL comes from the argument, else TOKENKEEPER_STORE, else the state dir.
 */
import { type Clock, systemClock } from "../core/clock.js";
import { ConflictError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { Keyring, RotationReport } from "./sealing.js";
import { parseStoreUrl } from "./store-url.js";
import type { Store } from "./types.js";

export interface OpenStoreOptions {
  env?: Record<string, string | undefined>;
  clock?: Clock;
  /** Overrides the keyring that would be loaded from `env`. */
  keyring?: Keyring | null;
  /** Overrides the URL's `encrypt=` (false: open a network store unsealed, e.g. to list names). */
  encrypt?: boolean;
}

/** What `tokenkeeper store init` and `rotate-key` need beyond the Store contract. */
export interface NetworkStore extends Store {
  readonly encrypted: boolean;
  migrate(): Promise<{ applied: number[]; current: number }>;
  rotateKey(next: Keyring): Promise<RotationReport>;
}

export function isNetworkStore(store: Store): store is NetworkStore {
  const s = store as Partial<NetworkStore>;
  return typeof s.migrate === "function" && typeof s.rotateKey === "function";
}

export async function openStore(url: string | undefined, options: OpenStoreOptions = {}): Promise<Store> {
  const env = options.env ?? process.env;
  const clock = options.clock ?? systemClock;
  const target = url?.trim() || env.TOKENKEEPER_STORE?.trim();
  if (!target) {
    const { defaultStateDir } = await import("./state-dir.js");
    return openFileStore(defaultStateDir(env), clock);
  }
  const parsed = parseStoreUrl(target);
  if (parsed.kind === "file") return openFileStore(parsed.dir, clock);
  // The store and the keyring decision read the same parsed URL: they cannot disagree.
  const sealed = options.encrypt ?? parsed.sealed;
  // Network stores and sealing are loaded only for a network URL: a `token` call on the file
  // store reads one file and should not pay for their modules at startup.
  const keyring =
    options.keyring !== undefined
      ? options.keyring
      : sealed
        ? await (await import("./sealing.js")).loadKeyring(env)
        : null;
  const storeOptions = {
    url: target,
    clock,
    keyring,
    ...(options.encrypt !== undefined ? { encrypt: options.encrypt } : {}),
  };
  if (parsed.kind === "redis") {
    const { RedisStore } = await import("./redis-store.js");
    return new RedisStore(storeOptions);
  }
  const { PostgresStore } = await import("./postgres-store.js");
  return new PostgresStore(storeOptions);
}

async function openFileStore(dir: string, clock: Clock): Promise<Store> {
  const { FileStore } = await import("./file-store.js");
  return new FileStore({ dir, clock });
}

// ---- copying between stores -------------------------------------------------------------------

export interface MigrateStoreOptions {
  /** Connectors to copy (default: every connector in the source). */
  names?: string[];
  /** Copy passes before giving up on a source that keeps changing (default 5). */
  maxPasses?: number;
  /** Lease of the source's refresh lock held while a connector is copied (default 30 s). */
  lockLeaseMs?: number;
  /** How long to wait for a source lock held by a refresh in progress (default 30 s). */
  lockWaitMs?: number;
}

export interface MigrateStoreReport {
  /** Each copied connector and the source version the target now holds. */
  copied: { name: string; version: number }[];
  /** How many passes it took until the source stood still (1 when nothing moved). */
  passes: number;
}

/**
 * Copies connectors from one store to another, then verifies. Each connector is copied while
 * holding the source's refresh lock, so a refresh cannot rotate the token between our read and
 * our write. A refresh may still happen after we release it (the source stays live during a
 * migration); then the source version moved, and that connector is copied again. Passes are
 * bounded: a source that never stands still ends in ConflictError rather than a stale copy.
 */
export async function migrateStore(
  from: Store,
  to: Store,
  options: MigrateStoreOptions = {},
): Promise<MigrateStoreReport> {
  const maxPasses = options.maxPasses ?? 5;
  const lock = { leaseMs: options.lockLeaseMs ?? 30_000, waitMs: options.lockWaitMs ?? 30_000 };
  const copied = new Map<string, number>();
  let pending = options.names ?? (await from.list());

  for (let pass = 1; ; pass++) {
    for (const name of pending) {
      const held = await from.lock(name, lock);
      try {
        const source = await from.get(name);
        if (!source) {
          copied.delete(name);
          continue;
        }
        await overwrite(to, name, source.record);
        copied.set(name, source.version);
      } finally {
        await held.release();
      }
    }

    // Verify: every copied connector still at the version we copied, and (when copying the
    // whole store) no connector created meanwhile.
    const moved: string[] = [];
    for (const [name, version] of copied) {
      const now = await from.get(name);
      if (!now) copied.delete(name);
      else if (now.version !== version) moved.push(name);
    }
    if (!options.names) {
      for (const name of await from.list()) if (!copied.has(name) && !moved.includes(name)) moved.push(name);
    }
    if (moved.length === 0) {
      return {
        copied: [...copied]
          .map(([name, version]) => ({ name, version }))
          .sort((a, b) => a.name.localeCompare(b.name)),
        passes: pass,
      };
    }
    if (pass >= maxPasses) {
      const name = moved[0]!;
      throw new ConflictError(name, copied.get(name) ?? null, (await from.get(name))?.version ?? null);
    }
    pending = moved;
  }
}

/**
 * Writes `record` into `to` over whatever is there (compare-and-set against the version we just
 * read). A target entry we cannot read (sealed under a key we lack) is not overwritten: the
 * StoreKeyError propagates.
 */
async function overwrite(to: Store, name: string, record: ConnectorRecord): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const current = await to.get(name);
    try {
      await to.put(name, record, current?.version ?? null);
      return;
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= 5) throw e;
    }
  }
}
