/**
 * The keeper: keeps one connector's token fresh for as long as it is asked to, like Vault's
 * LifetimeWatcher or a golang.org/x/oauth2 TokenSource held open. It sleeps until the token
 * enters its refresh-ahead window (the manager's own view, so the same window as every other
 * caller), refreshes unless someone else already did, backs off while failures last, and ends
 * cleanly: on stop(), when a human is needed, or (when `wanted` says so) once nobody uses it.
 *
 * Every wait is bounded: one sleep is at most `maxSleepMs` (the view is looked at again that
 * soon), a refresh is bounded by the manager's own retry deadline, and stop() aborts both. A
 * token another process wrote is taken when the refresh comes due: the manager reads the store
 * again under its lock before sending anything. Time comes from the manager's clock, so tests drive it with a ManualClock.
 *
 * It reports only changes of verdict (failing while the token is still usable, failing and
 * unusable, recovered, human needed); surfaces translate them into skip records, JSON-RPC
 * errors and exit codes.
 */
import type { Clock } from "../core/clock.js";
import { EXIT, exitCodeFor, isTokenkeeperError, type TokenkeeperError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import { type ConnectorView, coversView } from "./view.js";

/** What the keeper needs from the token manager (TokenManager implements it). */
export interface KeeperSource {
  readonly clock: Clock;
  view(connector: string): ConnectorView | undefined;
  getAccessToken(connector: string, options?: { signal?: AbortSignal }): Promise<unknown>;
  /** Refreshes unless the store already holds a token newer than `current`. */
  refreshAfterRejection(
    connector: string,
    current: Secret,
    options?: { signal?: AbortSignal },
  ): Promise<unknown>;
  /** The access token the view describes, for "newer than this one". */
  currentToken(connector: string): Secret | undefined;
}

export type KeeperReport =
  /** A refresh failed for a reason that may pass; `usable`: the current token is still valid. */
  | { kind: "failing"; connector: string; error: unknown; usable: boolean; view: ConnectorView | undefined }
  /** Refreshing works again after a failure. */
  | { kind: "recovered"; connector: string; view: ConnectorView | undefined }
  /** A human must act; the keeper has ended. */
  | { kind: "reauth"; connector: string; error: TokenkeeperError; view: ConnectorView | undefined };

/** Why a keeper ended. */
export type KeeperEnd = "stopped" | "reauth" | "idle";

export interface KeeperOptions {
  /** Aborting it stops the keeper (like stop()). */
  signal?: AbortSignal;
  /** Called on each change of verdict. A listener that throws is ignored. */
  onReport?: (report: KeeperReport) => void;
  /**
   * Keep fresh only while asked: consulted each time a refresh comes due; false ends the keeper
   * ("idle") without refreshing. Default: always wanted.
   */
  wanted?: () => boolean;
  /** Longest single sleep (default 60 s): the view is looked at again at least this often. */
  maxSleepMs?: number;
  /** At most one refresh attempt per this interval, whatever lifetime the server grants (default 1 s). */
  minIntervalMs?: number;
  /** Backoff between failed attempts: first and largest delay (default 1 s and 60 s). */
  backoff?: { initialMs?: number; maxMs?: number };
}

export interface Keeper {
  readonly connector: string;
  /** Settles (never rejects) when the keeper ends, with why. */
  readonly done: Promise<KeeperEnd>;
  /** Stops the keeper: aborts its sleep and any refresh it is waiting for; resolves once it has ended. */
  stop(): Promise<KeeperEnd>;
}

type Verdict = "ok" | "degraded" | "unusable";

export function startKeeper(source: KeeperSource, connector: string, options: KeeperOptions = {}): Keeper {
  const stopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
  const done = keep(source, connector, signal, options).catch(() => "stopped" as const);
  return {
    connector,
    done,
    stop() {
      stopper.abort();
      return done;
    },
  };
}

async function keep(
  source: KeeperSource,
  connector: string,
  signal: AbortSignal,
  options: KeeperOptions,
): Promise<KeeperEnd> {
  const clock = source.clock;
  const maxSleepMs = options.maxSleepMs ?? 60_000;
  const minIntervalMs = options.minIntervalMs ?? 1_000;
  const initialBackoffMs = options.backoff?.initialMs ?? 1_000;
  const maxBackoffMs = options.backoff?.maxMs ?? 60_000;
  const report = (r: KeeperReport) => {
    try {
      options.onReport?.(r);
    } catch {
      // An observer that throws must not stop the keeper.
    }
  };
  let verdict: Verdict = "ok";
  let backoffMs = initialBackoffMs;
  let lastAttemptAt: number | undefined;

  while (!signal.aborted) {
    const view = source.view(connector);
    const now = clock.now();
    let waitMs: number;
    if (!view?.hasToken) {
      waitMs = 0;
    } else if (view.refreshDueAt === null || !view.canRefresh) {
      // No stated expiry (a 401 says when it ends), or no way to refresh without a human
      // (asking early would only declare the connector dead early): look again later.
      waitMs = maxSleepMs;
    } else {
      waitMs = view.refreshDueAt - now;
    }
    if (lastAttemptAt !== undefined && now - lastAttemptAt < minIntervalMs) {
      waitMs = Math.max(waitMs, minIntervalMs - (now - lastAttemptAt));
    }
    if (waitMs > 0) {
      await clock.sleep(Math.min(waitMs, maxSleepMs), signal).catch(() => {});
      continue;
    }
    if (options.wanted && !options.wanted()) return "idle";

    lastAttemptAt = now;
    try {
      // "Newer than this token": when another process already refreshed, this is a store read.
      const current = view?.hasToken ? source.currentToken(connector) : undefined;
      if (current) await source.refreshAfterRejection(connector, current, { signal });
      else await source.getAccessToken(connector, { signal });
      if (verdict !== "ok") report({ kind: "recovered", connector, view: source.view(connector) });
      verdict = "ok";
      backoffMs = initialBackoffMs;
    } catch (error) {
      if (signal.aborted) break;
      const after = source.view(connector) ?? view;
      if (exitCodeFor(error) === EXIT.reauth && isTokenkeeperError(error)) {
        report({ kind: "reauth", connector, error, view: after });
        return "reauth";
      }
      const usable = after ? coversView(after, clock.now(), 0) : false;
      const next: Verdict = usable && isTokenkeeperError(error) ? "degraded" : "unusable";
      if (next !== verdict)
        report({ kind: "failing", connector, error, usable: next === "degraded", view: after });
      verdict = next;
      await clock.sleep(backoffMs, signal).catch(() => {});
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
    }
  }
  return "stopped";
}
