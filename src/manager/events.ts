/**
 * Events the manager emits. Observable by library users and written as JSON lines by the CLI.
 * By construction they carry no secret: only names, times, counts and scrubbed server text.
 */
export type TokenkeeperEvent =
  | {
      type: "refreshed";
      connector: string;
      at: number;
      expiresAt: number | null;
      rotated: boolean;
      refreshCount: number;
      durationMs: number;
      grant: string;
    }
  | { type: "rotated"; connector: string; at: number; rotationCount: number }
  | {
      type: "retrying";
      connector: string;
      at: number;
      attempt: number;
      delayMs: number;
      error: { code: string; message: string; status?: number };
    }
  | { type: "refresh_failed"; connector: string; at: number; error: { code: string; message: string } }
  | { type: "skew_detected"; connector: string; at: number; skewMs: number }
  | {
      type: "reauth_required";
      connector: string;
      at: number;
      reason: string;
      serverError?: string;
      serverErrorDescription?: string;
      action: string;
      since: number;
      requiredScope?: string;
    }
  | { type: "refresh_token_expiring"; connector: string; at: number; refreshTokenExpiresAt: number }
  | { type: "lock_contended"; connector: string; at: number; waitedMs: number };

export type EventListener = (event: TokenkeeperEvent) => void;

/** A minimal fan-out: a listener that throws is isolated from the others and from the manager. */
export class EventHub {
  readonly #listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(event: TokenkeeperEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A broken observer must never break token refresh.
      }
    }
  }
}
