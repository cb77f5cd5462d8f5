/**
 * `proxy --reauth browser`: when a connector needs a human, open the browser sign-in once — once
 * across every proxy of that connector sharing the store (Claude Desktop, Cursor and a second
 * window each start their own), not once per process.
 *
 * Single flight across processes is a store lock named for the connector's sign-in (not its
 * refresh lock: the login's own save takes that one), taken without waiting. Its lease outlasts
 * the login's own bounded wait for the browser, so a proxy that dies mid-login frees it for the
 * next episode. The proxy that holds it runs the login and knows the URL; the others say a
 * sign-in is open elsewhere, for as long as that lease can last, and pick up the new tokens from
 * the store when it completes (the proxy rechecks the store on requests).
 */
import type { Clock } from "../../core/clock.js";
import { LockTimeoutError, ReauthRequiredError } from "../../core/errors.js";
import type { ConnectorRecord } from "../../core/record.js";
import type { Store } from "../../store/types.js";

/** What a call is told while a sign-in is open. */
export interface SignInView {
  /** The authorization URL, when this proxy opened it. */
  url?: string;
  /** Whether this proxy runs the sign-in, or another one does. */
  here: boolean;
}

export interface BrowserSignInOptions {
  store: Store;
  clock: Clock;
  /**
   * Runs the browser login for the record, bounded by its own timeout; calls `onUrl` once the
   * authorization URL is known (before the person has finished).
   */
  login: (record: ConnectorRecord, onUrl: (url: string) => void) => Promise<void>;
  /** How long the login may wait for the person (its own timeout). */
  loginTimeoutMs: number;
}

export type SignInOutcome = "signed_in" | "elsewhere" | "failed";

/** The lock guarding a connector's sign-in: a valid lock name beside its refresh lock. */
export function signInLockName(connector: string): string {
  return `${connector.slice(0, 56)}.sign-in`;
}

/** Extra lease beyond the login's own timeout: its discovery, code exchange and save. */
const LEASE_MARGIN_MS = 60_000;

export class BrowserSignIn {
  readonly #o: BrowserSignInOptions;
  #open: { view: SignInView; until: number } | undefined;
  #running: Promise<SignInOutcome> | undefined;

  constructor(options: BrowserSignInOptions) {
    this.#o = options;
  }

  /** The sign-in open now (here or in another proxy), if any. */
  view(): SignInView | undefined {
    const open = this.#open;
    if (!open) return undefined;
    if (this.#o.clock.now() >= open.until) {
      this.#open = undefined;
      return undefined;
    }
    return open.view;
  }

  /** Starts the sign-in for `record` unless one runs (here: joined; elsewhere: not repeated). */
  start(record: ConnectorRecord): Promise<SignInOutcome> {
    this.#running ??= this.#run(record).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #run(record: ConnectorRecord): Promise<SignInOutcome> {
    const leaseMs = this.#o.loginTimeoutMs + LEASE_MARGIN_MS;
    const until = this.#o.clock.now() + leaseMs;
    let lock: Awaited<ReturnType<Store["lock"]>>;
    try {
      lock = await this.#o.store.lock(signInLockName(record.name), { leaseMs, waitMs: 0 });
    } catch (error) {
      if (!(error instanceof LockTimeoutError)) throw error;
      // Another proxy has the page open; its lease bounds how long we say so.
      const holderUntil = Number(error.fields.holderExpiresAt);
      this.#open = { view: { here: false }, until: Number.isFinite(holderUntil) ? holderUntil : until };
      return "elsewhere";
    }
    this.#open = { view: { here: true }, until };
    try {
      await this.#o.login(record, (url) => {
        if (this.#open?.view.here) this.#open = { view: { here: true, url }, until };
      });
      return "signed_in";
    } catch {
      return "failed";
    } finally {
      this.#open = undefined;
      await lock.release().catch(() => {});
    }
  }
}

/** The typed error a call gets while the sign-in is open: reauth_required, reason sign_in_open. */
export function signInOpenError(connector: string, view: SignInView, since: number): ReauthRequiredError {
  const where = view.url
    ? `finish signing in on the page opened in your browser (${view.url})`
    : view.here
      ? "the sign-in page is opening in your browser: finish signing in there"
      : "finish signing in on the page another Tokenkeeper proxy opened in your browser";
  return new ReauthRequiredError({
    connector,
    reason: "sign_in_open",
    since,
    action: `${where}; the connection resumes by itself once you have signed in, then retry`,
  });
}
