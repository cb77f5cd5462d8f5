// In-memory storage for oidc-provider, one store per authorization server.
//
// oidc-provider's bundled memory adapter would do, but it is an LRU capped at 1000 entries:
// a refresh-heavy benchmark evicts old (consumed) refresh tokens, and an evicted token answers
// "not found" instead of tripping reuse detection, which changes exactly the behaviour the bed
// exists to show. It also cannot be enumerated, so "revoke every grant" or "expire every refresh
// token" would be impossible. This store is unbounded, prunes expired entries lazily, and lets
// the bed look inside.
import type { Adapter, AdapterPayload } from "oidc-provider";

/** Models whose instances belong to a grant and die with it (mirrors oidc-provider's list). */
const GRANTABLE = new Set([
  "AccessToken",
  "AuthorizationCode",
  "RefreshToken",
  "DeviceCode",
  "BackchannelAuthenticationRequest",
  "PreAuthorizedCode",
]);

/**
 * Expired entries are kept this long past their expiry, so that presenting an expired artifact
 * gets oidc-provider's "expired" answer rather than "not found" (both are invalid_grant on the
 * wire, but the distinction helps when reading logs).
 */
const GRACE_MS = 60_000;

interface Entry {
  payload: AdapterPayload;
  /** epoch ms after which the entry may be pruned; Infinity when it has no lifetime */
  pruneAt: number;
}

export class MemoryStore {
  readonly #entries = new Map<string, Entry>();
  /** grantId → keys of the grantable entries issued under it */
  readonly #byGrant = new Map<string, Set<string>>();
  /** secondary indexes: "userCode:X" / "sessionUid:X" → primary id */
  readonly #index = new Map<string, string>();
  #writes = 0;

  /** An adapter factory for oidc-provider's `adapter` option. */
  adapterFactory(): (model: string) => Adapter {
    return (model: string) => this.#adapter(model);
  }

  /** Payloads currently stored for a model (e.g. "Grant", "RefreshToken"). */
  list(model: string): AdapterPayload[] {
    const prefix = `${model}:`;
    const out: AdapterPayload[] = [];
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (key.startsWith(prefix) && entry.pruneAt > now) out.push(entry.payload);
    }
    return out;
  }

  /** Deletes one entry (e.g. a dynamically registered "Client"); false when there was none. */
  forget(model: string, id: string): boolean {
    const k = `${model}:${id}`;
    if (!this.#entries.has(k)) return false;
    this.#delete(k);
    return true;
  }

  /** Deletes every grantable artifact issued under a grant, and the grant itself. */
  revokeGrant(grantId: string): void {
    for (const key of this.#byGrant.get(grantId) ?? []) this.#delete(key);
    this.#byGrant.delete(grantId);
    this.#delete(`Grant:${grantId}`);
  }

  #adapter(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        const k = key(id);
        this.#delete(k);
        const pruneAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 + GRACE_MS : Infinity;
        this.#entries.set(k, { payload, pruneAt });
        if (GRANTABLE.has(model) && typeof payload.grantId === "string") {
          const members = this.#byGrant.get(payload.grantId) ?? new Set<string>();
          members.add(k);
          this.#byGrant.set(payload.grantId, members);
        }
        if (model === "Session" && typeof payload.uid === "string") {
          this.#index.set(`sessionUid:${payload.uid}`, id);
        }
        if (typeof payload.userCode === "string") this.#index.set(`userCode:${payload.userCode}`, id);
        if (++this.#writes % 500 === 0) this.#prune();
      },
      find: async (id) => this.#get(key(id)),
      findByUid: async (uid) => {
        const id = this.#index.get(`sessionUid:${uid}`);
        return id === undefined ? undefined : this.#get(key(id));
      },
      findByUserCode: async (userCode) => {
        const id = this.#index.get(`userCode:${userCode}`);
        return id === undefined ? undefined : this.#get(key(id));
      },
      consume: async (id) => {
        const payload = this.#get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.#delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        // Called once per grantable model by oidc-provider; deleting every member on the first
        // call is harmless since the grant's artifacts all go anyway.
        for (const k of this.#byGrant.get(grantId) ?? []) this.#delete(k);
        this.#byGrant.delete(grantId);
      },
    };
  }

  #get(key: string): AdapterPayload | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.pruneAt <= Date.now()) {
      this.#delete(key);
      return undefined;
    }
    return entry.payload;
  }

  #delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    const { payload } = entry;
    if (typeof payload.grantId === "string") this.#byGrant.get(payload.grantId)?.delete(key);
    const id = key.slice(key.indexOf(":") + 1);
    for (const indexKey of [`userCode:${payload.userCode}`, `sessionUid:${payload.uid}`]) {
      if (this.#index.get(indexKey) === id) this.#index.delete(indexKey);
    }
  }

  #prune(): void {
    const now = Date.now();
    for (const [key, entry] of this.#entries) if (entry.pruneAt <= now) this.#delete(key);
  }
}
