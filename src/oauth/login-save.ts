/**
 * Login's final write. The person may spend minutes in the browser; meanwhile other processes
 * keep writing the connector (a keepalive refreshing the old grant, a run or a notifier marking
 * state). A plain compare-and-set against the version read when the login started would then
 * fail, throwing away an authorization the person just gave and leaving its fresh grant orphaned
 * at the server. So the write is a merge with whatever is stored *now*:
 *
 *   - the login's own results win: server, client, scope, grant, tokens, and a fresh health state
 *     (the new grant is healthy; a reauth mark or notification stamp of the old grant is over);
 *   - what is not the login's to decide is kept from the current record: settings (someone may
 *     have changed them meanwhile), history counters (refreshes of the old grant happened), the
 *     creation time, and a clock-skew measurement when the login made none.
 *
 * It runs under the connector's refresh lock, so no refresher is mid-flight spending the old
 * refresh token while it is replaced, and retries the compare-and-set a bounded number of times
 * against writers that do not take the lock (state marks).
 */
import type { Clock } from "../core/clock.js";
import { ConfigError, ConflictError, LockTimeoutError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { Store, StoredRecord, StoreLock } from "../store/types.js";

/** The refresher's default lease is 30 s: waiting a little longer outlasts one stuck holder. */
const LOCK_WAIT_MS = 35_000;
const LOCK_LEASE_MS = 30_000;
const MAX_ATTEMPTS = 5;

export interface SaveLoginDeps {
  clock: Clock;
  signal?: AbortSignal;
  note?: (line: string) => void;
}

/** `fresh` laid over what is stored now (see the module comment). Pure. */
export function mergeLoginRecord(fresh: ConnectorRecord, current: ConnectorRecord | null): ConnectorRecord {
  if (!current) return fresh;
  const skew =
    fresh.state.clockSkewMs === undefined && current.state.clockSkewMs !== undefined
      ? {
          clockSkewMs: current.state.clockSkewMs,
          ...(current.state.clockSkewMeasuredAt !== undefined
            ? { clockSkewMeasuredAt: current.state.clockSkewMeasuredAt }
            : {}),
        }
      : {};
  return {
    ...fresh,
    state: {
      ...fresh.state,
      refreshCount: Math.max(fresh.state.refreshCount, current.state.refreshCount),
      rotationCount: Math.max(fresh.state.rotationCount, current.state.rotationCount),
      ...skew,
    },
    settings: current.settings,
    createdAt: current.createdAt,
  };
}

/**
 * Writes the login's record, merged with the stored one, under the refresh lock. Returns what was
 * written and its version. `expectedVersion` is the version the login started from: when it is
 * still current, nothing was written meanwhile and the record goes in as it is.
 */
export async function saveLogin(
  store: Store,
  fresh: ConnectorRecord,
  expectedVersion: number | null,
  deps: SaveLoginDeps,
): Promise<StoredRecord> {
  const name = fresh.name;
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
    let current: StoredRecord | null | undefined;
    for (let attempt = 1; ; attempt++) {
      // First try the version the login started from: the usual case, one write and no read.
      const base = current === undefined ? expectedVersion : (current?.version ?? null);
      const merged = current === undefined ? fresh : mergeLoginRecord(fresh, current?.record ?? null);
      const record = { ...merged, updatedAt: deps.clock.now() };
      try {
        return { record, version: await store.put(name, record, base) };
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt >= MAX_ATTEMPTS) throw error;
      }
      current = await store.get(name);
      if (current && current.record.server.mcpUrl !== fresh.server.mcpUrl) {
        throw new ConfigError(
          `connector "${name}" was re-created for ${current.record.server.mcpUrl} while this login ran; nothing was saved. Log in under another --name`,
          { connector: name },
        );
      }
    }
  } finally {
    // A release that fails (the store went away) must not turn a saved login into an error: the
    // lease ends by itself.
    await lock?.release().catch(() => {});
  }
}
