/**
 * Read-modify-write of a record with compare-and-set, retried on conflict. For state that is
 * not a token refresh (health, notification marks, settings): those merge onto whatever the
 * latest token set is, so they never roll back a rotation.
 */
import { ConflictError, NotFoundError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { Store, StoredRecord } from "./types.js";

export async function updateRecord(
  store: Store,
  name: string,
  change: (record: ConnectorRecord) => ConnectorRecord | null,
  attempts = 8,
): Promise<StoredRecord | null> {
  for (let i = 0; ; i++) {
    const current = await store.get(name);
    if (!current) throw new NotFoundError(name, store.location);
    const next = change(current.record);
    if (next === null) return current;
    try {
      const version = await store.put(name, next, current.version);
      return { record: next, version };
    } catch (error) {
      if (!(error instanceof ConflictError) || i + 1 >= attempts) throw error;
    }
  }
}
