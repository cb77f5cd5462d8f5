/**
 * Notifications: a human hears about a connector that needs them once per occasion — once per
 * transition to reauth_required, once per refresh-token expiry warning — however many processes
 * (cron jobs, keepalive, runs) notice it. The claim is a compare-and-set write of
 * ConnectorState.notifiedAt / expiryWarnedAt: exactly one process wins it and sends; if every
 * channel then fails, the claim is released so a later process (keepalive) tries again.
 *
 * Channels: a shell command that gets the record as JSON on stdin, and a webhook that gets it
 * as a JSON POST. Both bounded: a command is killed after its timeout; a webhook request times
 * out and is retried a few times with backoff. The payload is a skip record plus `event`: no
 * secret ever (the webhook URL itself may hold one, so it is never printed beyond its origin).
 */
import { spawn } from "node:child_process";
import { childEnv } from "../core/child-env.js";
import { type Clock, timeoutSignal } from "../core/clock.js";
import { ConfigError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { scrubText } from "../core/secret.js";
import { reauthErrorFromRecord } from "../manager/reauth.js";
import { createTokenManager, type TokenManager } from "../manager/token-manager.js";
import type { NoticeField } from "../manager/transitions.js";
import { recordTimesOf, refreshTokenExpiry } from "../manager/view.js";
import { assertSecureUrl, type FetchLike } from "../oauth/http.js";
import type { Store } from "../store/types.js";
import { type SkipRecord, skippedRecord, skipRecordJson } from "./skip-record.js";

export type NotificationEvent = "reauth_required" | "refresh_token_expiring";

export type Notification = SkipRecord & { event: NotificationEvent };

export interface NotifyTargets {
  /** Run with `sh -c`; the notification JSON on stdin. */
  command?: string;
  /** POSTed the notification JSON. HTTPS, or plain HTTP to a loopback address. */
  webhook?: string;
}

export interface NotifierOptions {
  /** Used for connectors that do not name their own (settings.notifyCommand / notifyWebhook). */
  global?: NotifyTargets;
  clock: Clock;
  fetch?: FetchLike;
  /** Environment for notification commands (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Bound on one command run (default 10 s; then it is killed). */
  commandTimeoutMs?: number;
  /** Bound on one webhook request (default 5 s). */
  webhookTimeoutMs?: number;
  /** Webhook attempts, including the first (default 3). */
  webhookAttempts?: number;
  /** First delay between webhook attempts, doubled each time (default 1 s). */
  webhookBackoffMs?: number;
  /** Told about each channel that failed (for stderr / the events log). Never given a secret. */
  onFailure?: (failure: {
    connector: string;
    channel: "command" | "webhook";
    target: string;
    error: string;
  }) => void;
  /** Told about each notification delivered by at least one channel. */
  onSent?: (notification: Notification) => void;
}

export type NotifyOutcome = "sent" | "already_notified" | "not_needed" | "no_target" | "failed";

/**
 * Who writes the notification marks: the token manager (the one writer of records). A bare Store
 * is still accepted, as before; a manager over it then does the writes.
 */
export type NoticeMarks = Pick<TokenManager, "claimNotice" | "releaseNotice">;

export class Notifier {
  readonly #options: NotifierOptions;
  readonly #pending = new Set<Promise<unknown>>();

  constructor(options: NotifierOptions) {
    this.#options = options;
    for (const url of [options.global?.webhook]) if (url) assertWebhookUrl(url);
  }

  /** A connector's own settings win over the global ones, channel by channel. */
  targetsFor(record: ConnectorRecord): NotifyTargets {
    const command = record.settings.notifyCommand ?? this.#options.global?.command;
    const webhook = record.settings.notifyWebhook ?? this.#options.global?.webhook;
    return { ...(command ? { command } : {}), ...(webhook ? { webhook } : {}) };
  }

  /** Notifies that `name` needs re-authorization, unless someone already did for this transition. */
  notifyReauth(marks: NoticeMarks | Store, name: string): Promise<NotifyOutcome> {
    return this.#track(
      this.#claimAndSend(marks, name, "reauth_required", (r) => {
        const dead = reauthErrorFromRecord(r);
        if (!dead) return undefined;
        // Once per transition: a mark at or after `since` means this transition was announced.
        if (r.state.notifiedAt !== undefined && r.state.notifiedAt >= dead.fields.since) return "already";
        return skippedRecord(r.name, dead, recordTimesOf(r, this.#options.clock.now()));
      }),
    );
  }

  /**
   * Warns that the refresh token of `name` ends at its known absolute expiry, within `warnBeforeMs`.
   * Once per expiry: a mark inside the current warning period means it was sent.
   */
  warnExpiry(
    marks: NoticeMarks | Store,
    name: string,
    warnBeforeMs: number,
    record: SkipRecord,
  ): Promise<NotifyOutcome> {
    return this.#track(
      this.#claimAndSend(marks, name, "refresh_token_expiring", (r) => {
        const expiry = refreshTokenExpiry(r);
        if (expiry === null || reauthErrorFromRecord(r)) return undefined;
        const now = this.#options.clock.now();
        if (expiry - now > warnBeforeMs) return undefined;
        if (r.state.expiryWarnedAt !== undefined && r.state.expiryWarnedAt >= expiry - warnBeforeMs)
          return "already";
        return record;
      }),
    );
  }

  /** Delivers a notification to `targets` now, without any claim. True when a channel took it. */
  async deliver(notification: Notification, targets: NotifyTargets): Promise<boolean> {
    const { event, ...record } = notification;
    const body = `${skipRecordJson(record, { event })}\n`;
    const attempts: Promise<boolean>[] = [];
    if (targets.command)
      attempts.push(this.#runCommand(notification.connector, targets.command, body, notification.event));
    if (targets.webhook) attempts.push(this.#postWebhook(notification.connector, targets.webhook, body));
    const results = await Promise.all(attempts);
    const ok = results.some(Boolean);
    if (ok) this.#options.onSent?.(notification);
    return ok;
  }

  /** Waits for notifications started in the background (bounded by the channels' own bounds). */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    promise.finally(() => this.#pending.delete(promise)).catch(() => {});
    return promise;
  }

  #marks(target: NoticeMarks | Store): NoticeMarks {
    return "claimNotice" in target
      ? target
      : createTokenManager({ store: target, clock: this.#options.clock });
  }

  async #claimAndSend(
    target: NoticeMarks | Store,
    name: string,
    event: NotificationEvent,
    decide: (record: ConnectorRecord) => SkipRecord | "already" | undefined,
  ): Promise<NotifyOutcome> {
    const marks = this.#marks(target);
    const field: NoticeField = event === "reauth_required" ? "notifiedAt" : "expiryWarnedAt";
    const claimAt = this.#options.clock.now();
    let outcome: NotifyOutcome = "not_needed";
    let payload: SkipRecord | undefined;
    let targets: NotifyTargets = {};
    // The claim: whoever's compare-and-set lands first sends; the others see the mark and stop.
    const claimed = await marks.claimNotice(name, field, claimAt, (current) => {
      payload = undefined;
      const verdict = decide(current);
      if (verdict === undefined) {
        outcome = "not_needed";
        return false;
      }
      if (verdict === "already") {
        outcome = "already_notified";
        return false;
      }
      targets = this.targetsFor(current);
      if (!targets.command && !targets.webhook) {
        outcome = "no_target";
        return false;
      }
      payload = verdict;
      return true;
    });
    if (!claimed || !payload) return outcome;

    const delivered = await this.deliver({ ...payload, event }, targets);
    if (delivered) return "sent";
    // Every channel failed: give the claim back (if it is still ours) so the next process retries.
    await marks.releaseNotice(name, field, claimAt).catch(() => {});
    return "failed";
  }

  #runCommand(connector: string, command: string, body: string, event: NotificationEvent): Promise<boolean> {
    const timeoutMs = this.#options.commandTimeoutMs ?? 10_000;
    const clock = this.#options.clock;
    return new Promise<boolean>((resolve) => {
      let stderr = "";
      let settled = false;
      const stop = new AbortController();
      const finish = (ok: boolean, error?: string) => {
        if (settled) return;
        settled = true;
        stop.abort();
        if (!ok)
          this.#options.onFailure?.({
            connector,
            channel: "command",
            target: commandLabel(command),
            error: error ?? "failed",
          });
        resolve(ok);
      };
      // Its own process group, so a timeout kills the whole pipeline (sh and whatever it started),
      // not just the shell while a grandchild keeps running and holding our pipes.
      const child = spawn("/bin/sh", ["-c", command], {
        detached: true,
        stdio: ["pipe", "ignore", "pipe"],
        env: {
          ...childEnv(this.#options.env ?? process.env),
          TOKENKEEPER_EVENT: event,
          TOKENKEEPER_CONNECTOR: connector,
        },
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        if (stderr.length < 2_000) stderr += chunk.toString("utf8");
      });
      child.on("error", (error) => finish(false, error.message));
      child.on("close", (code, signal) => {
        if (code === 0) finish(true);
        else
          finish(
            false,
            signal
              ? `killed by ${signal}`
              : `exit ${code}${stderr ? `: ${scrubText(stderr.trim(), 300)}` : ""}`,
          );
      });
      // A command that does not read stdin must not make us fail: ignore EPIPE.
      child.stdin?.on("error", () => {});
      child.stdin?.end(body);
      clock.sleep(timeoutMs, stop.signal).then(
        () => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
          } catch {
            child.kill("SIGKILL");
          }
          child.stderr?.destroy();
          finish(false, `timed out after ${timeoutMs} ms`);
        },
        () => {},
      );
    });
  }

  async #postWebhook(connector: string, url: string, body: string): Promise<boolean> {
    const clock = this.#options.clock;
    const fetchFn = this.#options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const attempts = Math.max(1, this.#options.webhookAttempts ?? 3);
    const timeoutMs = this.#options.webhookTimeoutMs ?? 5_000;
    let delay = this.#options.webhookBackoffMs ?? 1_000;
    let lastError = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const timeout = timeoutSignal(clock, timeoutMs);
      let retryable = true;
      try {
        assertWebhookUrl(url);
        const response = await fetchFn(url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": "tokenkeeper" },
          body,
          signal: timeout.signal,
          redirect: "manual",
        });
        await response.body?.cancel().catch(() => {});
        if (response.status >= 200 && response.status < 300) return true;
        lastError = `HTTP ${response.status}`;
        // A 4xx other than timeout/rate limit will not change by asking again.
        retryable = response.status >= 500 || response.status === 408 || response.status === 429;
      } catch (error) {
        if (error instanceof ConfigError) {
          lastError = error.message;
          retryable = false;
        } else {
          lastError =
            error instanceof Error && error.name === "TimeoutError"
              ? `timed out after ${timeoutMs} ms`
              : "network error";
        }
      } finally {
        timeout.dispose();
      }
      if (!retryable || attempt === attempts) break;
      await clock.sleep(delay);
      delay *= 2;
    }
    this.#options.onFailure?.({ connector, channel: "webhook", target: webhookLabel(url), error: lastError });
    return false;
  }
}

/** Sends a notification for every reauth transition this manager makes. Returns the unsubscribe. */
export function notifyOnReauth(manager: TokenManager, notifier: Notifier): () => void {
  return manager.subscribe((event) => {
    if (event.type !== "reauth_required") return;
    notifier.notifyReauth(manager, event.connector).catch(() => {});
  });
}

function assertWebhookUrl(url: string): void {
  try {
    assertSecureUrl(url, "notification webhook");
  } catch {
    throw new ConfigError(
      `the notification webhook ${webhookLabel(url)} must be HTTPS (plain HTTP only to a loopback address)`,
    );
  }
}

/** Webhook URLs often carry their secret in the path (Slack, Teams): show the origin only. */
export function webhookLabel(url: string): string {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return "(invalid URL)";
  }
}

function commandLabel(command: string): string {
  return scrubText(command.split(/\s+/)[0] ?? "", 80);
}
