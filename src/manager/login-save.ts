/**
 * A login's final write, the one way every login is saved (the CLI's browser, device and
 * machine logins, an imported authorization, the MCP SDK's own code exchange). The person may
 * spend minutes in the browser; meanwhile other processes keep writing the connector. A plain
 * compare-and-set against the version read when the login started would then fail, throwing away
 * an authorization the person just gave and leaving its fresh grant orphaned at the server. So
 * the write is a merge with whatever is stored *now* (transitions.mergeLogin decides it, pure).
 *
 * It runs under the connector's refresh lock, so no refresher is mid-flight spending the old
 * refresh token while it is replaced, and retries the compare-and-set a bounded number of times
 * against writers that do not take the lock (state marks).
 */
import type { Clock } from "../core/clock.js";
import { ConfigError, ConflictError, LockTimeoutError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { Store, StoredRecord, StoreLock } from "../store/types.js";
import { mergeLogin } from "./transitions.js";

/** The refresher's default lease is 30 s: waiting a little longer outlasts one stuck holder. */
const LOCK_WAIT_MS = 35_000;
const LOCK_LEASE_MS = 30_000;
const MAX_ATTEMPTS = 5;

export interface SaveLoginDeps {
  clock: Clock;
  signal?: AbortSignal;
  note?: (line: string) => void;
}

/** What to write: a record built from the one stored now (null when there is none). */
export type LoginBuild = (current: ConnectorRecord | null) => ConnectorRecord;

/**
 * Writes `build(current)` under the refresh lock, compare-and-set, re-reading and rebuilding on
 * conflict. `first`, when given, is tried before any read: the record as the login built it and
 * the version it started from (the usual case, one write and no read).
 */
export async function saveLoginWith(
  store: Store,
  name: string,
  build: LoginBuild,
  first: { record: ConnectorRecord; version: number | null } | undefined,
  deps: SaveLoginDeps,
): Promise<StoredRecord> {
  let lock: StoreLock | undefined;
  try {
    lock = await store.lock(name, {
      leaseMs: LOCK_LEASE_MS,
      waitMs: LOCK_WAIT_MS,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
  } catch (error) {
    // A holder stuck past our wait must not cost the person their authorization: the versioned
    // write below still never overwrites a newer record blindly.
    if (!(error instanceof LockTimeoutError)) throw error;
    deps.note?.(`The refresh lock of "${name}" stayed busy; saving by compare-and-set without it`);
  }
  try {
    let current: StoredRecord | null | undefined = first ? undefined : await store.get(name);
    for (let attempt = 1; ; attempt++) {
      const base = current === undefined ? (first?.version ?? null) : (current?.version ?? null);
      const built = current === undefined ? first!.record : build(current?.record ?? null);
      const record = { ...built, updatedAt: deps.clock.now() };
      try {
        return { record, version: await store.put(name, record, base) };
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= MAX_ATTEMPTS) throw error;
      }
      current = await store.get(name);
    }
  } finally {
    // A release that fails (the store went away) must not turn a saved login into an error: the
    // lease ends by itself.
    await lock?.release().catch(() => {});
  }
}

/**
 * Writes a login's complete record, merged with the stored one (transitions.mergeLogin).
 * `expectedVersion` is the version the login started from (null: there was no connector): when
 * it is still current, nothing was written meanwhile and the record goes in as it is.
 */
export function saveLogin(
  store: Store,
  fresh: ConnectorRecord,
  expectedVersion: number | null,
  deps: SaveLoginDeps,
): Promise<StoredRecord> {
  const name = fresh.name;
  return saveLoginWith(
    store,
    name,
    (current) => {
      if (current && current.server.mcpUrl !== fresh.server.mcpUrl) {
        throw new ConfigError(
          `connector "${name}" was re-created for ${current.server.mcpUrl} while this login ran; nothing was saved. Log in under another --name`,
          { connector: name },
        );
      }
      return mergeLogin(fresh, current);
    },
    { record: fresh, version: expectedVersion },
    deps,
  );
}
