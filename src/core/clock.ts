/**
 * Time is injected everywhere: core code asks a Clock, never Date.now() or setTimeout,
 * so tests of expiry, skew and backoff are exact and instant.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch, by this machine's clock. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason if aborted first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** The real clock. The only place in the library that touches wall time and timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        Math.max(0, ms),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  },
};

/**
 * A signal that aborts after `ms` by the given clock (a TimeoutError, like AbortSignal.timeout),
 * or when `parent` aborts. Call `dispose()` when done so no timer outlives the request.
 */
export function timeoutSignal(
  clock: Clock,
  ms: number,
  parent?: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const stop = new AbortController();
  const onParentAbort = () => controller.abort(parent!.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener("abort", onParentAbort, { once: true });
  clock.sleep(ms, stop.signal).then(
    () => controller.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError")),
    () => {},
  );
  return {
    signal: controller.signal,
    dispose: () => {
      stop.abort();
      parent?.removeEventListener("abort", onParentAbort);
    },
  };
}

/**
 * A clock that moves only when told to. Sleepers wake in deadline order as time is advanced.
 */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: { until: number; resolve: () => void }[] = [];

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const sleeper = { until: this.#now + Math.max(0, ms), resolve };
      this.#sleepers.push(sleeper);
      signal?.addEventListener(
        "abort",
        () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
          reject(abortReason(signal));
        },
        { once: true },
      );
    });
  }

  /** How many sleeps are pending (lets a test wait until code under test is parked). */
  get pendingSleeps(): number {
    return this.#sleepers.length;
  }

  /** Moves time forward, waking every sleeper whose deadline has passed, letting promise chains run between wakes. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await flushMicrotasks();
      const next = this.#sleepers.filter((s) => s.until <= target).sort((a, b) => a.until - b.until)[0];
      if (!next) break;
      this.#now = Math.max(this.#now, next.until);
      this.#sleepers = this.#sleepers.filter((s) => s !== next);
      next.resolve();
    }
    this.#now = target;
    await flushMicrotasks();
  }

  /** Sets the wall clock (as a step, like an NTP correction); sleepers are not woken. */
  set(epochMs: number): void {
    this.#now = epochMs;
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}
