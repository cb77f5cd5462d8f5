/**
 * The client's requests the remote server has not answered yet. Bounded: a session that lasts
 * for days holds only what is in flight, and past the limit new requests are refused at once
 * (the client gets an error) rather than queued without end.
 */
import type { RequestId } from "./errors.js";

export interface PendingRequest {
  id: RequestId;
  method: string;
  /** Local clock, ms. */
  startedAt: number;
}

/** 1 and "1" are different JSON-RPC ids. */
function keyOf(id: RequestId): string | number {
  return typeof id === "number" ? id : `s:${id}`;
}

export class PendingRequests {
  readonly limit: number;
  readonly #byId = new Map<string | number, PendingRequest>();

  constructor(limit: number) {
    this.limit = limit;
  }

  get size(): number {
    return this.#byId.size;
  }

  /** False when the request cannot be tracked: full, or the id is already in flight (a client bug). */
  add(id: RequestId, method: string, startedAt: number): boolean {
    const key = keyOf(id);
    if (this.#byId.size >= this.limit || this.#byId.has(key)) return false;
    this.#byId.set(key, { id, method, startedAt });
    return true;
  }

  has(id: RequestId): boolean {
    return this.#byId.has(keyOf(id));
  }

  /** Removes and returns the request: whoever takes it is the one who answers it. */
  take(id: RequestId): PendingRequest | undefined {
    const key = keyOf(id);
    const entry = this.#byId.get(key);
    if (entry) this.#byId.delete(key);
    return entry;
  }

  ids(): RequestId[] {
    return [...this.#byId.values()].map((p) => p.id);
  }

  /** Removes and returns everything in flight. */
  drain(): PendingRequest[] {
    const all = [...this.#byId.values()];
    this.#byId.clear();
    return all;
  }
}
