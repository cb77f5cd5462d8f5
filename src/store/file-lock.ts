/**
 * A cross-process lock with a lease, built from files: the file store's refresh lock and its
 * short write mutex.
 *
 * Layout. The lock at path `L` (e.g. `<dir>/locks/github.lock`) is a *directory* holding exactly one
 * file, `<token>.json`, that describes its holder: {pid, hostname, token, acquiredAt, expiresAt}.
 * The token is 128 random bits, unique to one acquisition.
 *
 * Protocol, and why it is race-free:
 * - Acquire: write the holder file into a private temp directory, then rename(2) that directory to
 *   `L`. Renaming a directory succeeds only when `L` does not exist or is an *empty* directory, and
 *   does so atomically; so of several processes racing, exactly one wins, and the holder file is
 *   complete the instant it becomes visible (nobody ever reads a half-written lock and mistakes it
 *   for a broken one, the weak spot of "O_EXCL create, then write").
 * - Release and take-over are the same operation: unlink(`L/<token>.json`) for the token one means
 *   to remove, then rmdir(`L`). The unlink names the token, so it can only remove that one
 *   acquisition's file. This is what makes take-over safe between several waiters: the classic
 *   pid-file bug is "I saw a stale lock, then deleted `L`", which deletes the *fresh* lock another
 *   waiter created in between. Here, when two waiters judge the same holder stale, both unlink the
 *   same token file, one gets ENOENT, and then both race on rename, which one wins. A holder whose
 *   lease was taken over behaves the same way on release: its unlink finds nothing (a no-op), it
 *   cannot touch the new holder's file. rmdir only succeeds on an empty directory, so it cannot
 *   remove a lock created between the unlink and the rmdir either.
 * - An empty `L` (a holder died between unlink and rmdir) counts as free: POSIX rename replaces an
 *   empty directory; where it cannot (Windows) the next waiter rmdirs it first.
 * - A waiter judges a holder stale when its lease has run out by the waiter's clock, when it is a
 *   dead process on this host (kill(pid, 0) → ESRCH: SIGKILL, OOM kill, crash), or when its file
 *   cannot be parsed (only a crash of the machine can leave that, see below). A live process on
 *   another host is only ever judged by its lease.
 *
 * Lock files are deliberately not fsynced: a lock matters only while its holder lives, and a crash
 * of the machine ends every holder. Waits poll with capped exponential backoff on the injected
 * clock and are bounded by `waitMs`.
 */
import { existsSync } from "node:fs";
import { access, mkdir, readdir, readFile, rename, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Clock } from "../core/clock.js";
import { StoreCorruptError } from "../core/errors.js";
import { randomHex } from "../core/random.js";
import { number, object, ShapeError, string } from "../core/shape.js";
import { tempPathFor } from "./atomic-write.js";
import type { LockOptions, StoreLock } from "./types.js";

export interface LockHolder {
  pid: number;
  hostname: string;
  token: string;
  /** Epoch ms by the holder's clock. */
  acquiredAt: number;
  /** Epoch ms by the holder's clock; others may take the lock after this. */
  expiresAt: number;
}

export interface AcquireOptions extends LockOptions {
  clock: Clock;
  /** Builds the error thrown when `waitMs` runs out; the caller knows what the lock protects. */
  timeoutError: (holder: LockHolder | null) => Error;
}

/** Why a holder no longer counts. */
export type HolderVerdict = "live" | "expired" | "dead" | "unreadable";

/** First poll after a busy look, and the cap of the backoff: a dead holder is noticed within the cap. */
const MIN_POLL_MS = 10;
const MAX_POLL_MS = 200;

const THIS_HOST = hostname();

const holderSchema = object({
  pid: number({ int: true, min: 1 }),
  hostname: string(),
  token: string({ pattern: /^[0-9a-f]{32}$/ }),
  acquiredAt: number(),
  expiresAt: number(),
});

/** Tokens of the locks this process has taken and not released. */
const ownTokens = new Set<string>();

export interface Self {
  hostname: string;
  pid: number;
  /** Whether this process took the lock with this token (and has not released it). */
  owns: (token: string) => boolean;
}

/** Decides whether a holder still counts. Pure: the caller supplies the time and the liveness probe. */
export function judgeHolder(
  holder: LockHolder | null,
  now: number,
  self: Self,
  isAlive: (pid: number) => boolean,
): HolderVerdict {
  if (!holder) return "unreadable";
  if (now >= holder.expiresAt) return "expired";
  // A pid means something only on its own host.
  if (holder.hostname !== self.hostname) return "live";
  // Our own pid with a token we never issued: an earlier process that had our pid (a container
  // restarted with the same pid, often 1) died holding it.
  if (holder.pid === self.pid) return self.owns(holder.token) ? "live" : "dead";
  return isAlive(holder.pid) ? "live" : "dead";
}

/** kill(pid, 0) delivers nothing and only asks whether the process exists. EPERM: it exists, as another user. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

function parseHolder(text: string, fileName: string): LockHolder | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  let holder: LockHolder;
  try {
    holder = holderSchema(data, "");
  } catch (error) {
    if (error instanceof ShapeError) return null;
    throw error;
  }
  // A file whose name and content disagree was not written by this protocol: treat it as unreadable.
  return `${holder.token}.json` === fileName ? holder : null;
}

type Look =
  | { state: "free" }
  | { state: "changed" }
  | { state: "held"; file: string; holder: LockHolder | null; verdict: HolderVerdict };

async function look(path: string, clock: Clock): Promise<Look> {
  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { state: "changed" };
    if (code === "ENOTDIR") {
      throw new StoreCorruptError(
        `${path} is not a lock directory; remove it if no tokenkeeper process is running`,
        {
          file: path,
        },
      );
    }
    throw error;
  }
  const file = entries.find((e) => e.endsWith(".json"));
  if (!file) {
    if (entries.length === 0) return { state: "free" };
    throw new StoreCorruptError(
      `${path} holds files that are not a lock; remove it if no tokenkeeper process is running`,
      {
        file: path,
      },
    );
  }
  let text: string;
  try {
    text = await readFile(join(path, file), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { state: "changed" };
    throw error;
  }
  const holder = parseHolder(text, file);
  const self = { hostname: THIS_HOST, pid: process.pid, owns: (t: string) => ownTokens.has(t) };
  const verdict = judgeHolder(holder, clock.now(), self, isProcessAlive);
  return { state: "held", file, holder, verdict };
}

/**
 * Whether the lock at `path` is held by a holder that still counts (its lease running, its
 * process alive): "live", else "free" (absent, empty, or a holder that would be taken over).
 */
export async function lockState(path: string, clock: Clock): Promise<"live" | "free"> {
  const seen = await look(path, clock);
  return seen.state === "held" && seen.verdict === "live" ? "live" : "free";
}

/** The holder of the lock at `path`, or null when it is free (for status displays; racy by nature). */
export async function readLockHolder(path: string): Promise<LockHolder | null> {
  try {
    const file = (await readdir(path)).find((e) => e.endsWith(".json"));
    return file ? parseHolder(await readFile(join(path, file), "utf8"), file) : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** rename() of a directory onto an occupied name: ENOTEMPTY/EEXIST on POSIX, EPERM/EACCES on Windows. */
function isOccupied(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return (
    code === "ENOTEMPTY" ||
    code === "EEXIST" ||
    (process.platform === "win32" && (code === "EPERM" || code === "EACCES"))
  );
}

async function removeIfEmpty(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Not empty: someone took the lock in between, which is theirs to keep. Gone: someone else tidied.
    if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOENT") throw error;
  }
}

async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

/**
 * Removes one holder's file from the lock at `path`, then the lock directory if that left it empty.
 * The only way the protocol ever removes anything, for release and take-over alike: it names the
 * holder, so it cannot remove a newer holder's lock. False when that holder's file was already gone.
 */
export async function removeHolderFile(path: string, file: string): Promise<boolean> {
  if (!(await unlinkIfPresent(join(path, file)))) return false;
  await removeIfEmpty(path);
  return true;
}

/**
 * Takes the lock at `path` (a directory that need not exist; its parent must). Waits at most
 * `waitMs` by the injected clock, then throws `timeoutError(holder)`; rejects with the signal's
 * reason when aborted.
 */
export async function acquireFileLock(
  path: string,
  name: string,
  options: AcquireOptions,
): Promise<FileLock> {
  const { clock, signal } = options;
  const deadline = clock.now() + Math.max(0, options.waitMs);
  const token = randomHex(16);
  const staging = tempPathFor(path);
  let delay = MIN_POLL_MS;
  // Rounds that changed something (a stale lock removed, an empty one tidied) retry at once; if that
  // keeps happening without progress we still pause, so a frozen test clock cannot spin us forever.
  let quickRetries = 0;
  try {
    await mkdir(staging, { mode: 0o700 });
    for (;;) {
      signal?.throwIfAborted();
      const now = clock.now();
      const holder: LockHolder = {
        pid: process.pid,
        hostname: THIS_HOST,
        token,
        acquiredAt: now,
        expiresAt: now + options.leaseMs,
      };
      // Rewritten on every attempt so the lease starts when the lock is actually taken.
      await writeFile(join(staging, `${token}.json`), JSON.stringify(holder), { mode: 0o600 });
      // Registered before the rename: from the instant the lock is visible, this process's own
      // waiters must see it as live.
      ownTokens.add(token);
      try {
        await rename(staging, path);
        return new FileLock(name, path, holder, clock);
      } catch (error) {
        ownTokens.delete(token);
        if (!isOccupied(error)) throw error;
      }

      const seen = await look(path, clock);
      if (seen.state !== "held" || seen.verdict !== "live") {
        if (seen.state === "free") await removeIfEmpty(path);
        if (seen.state === "held") {
          // Take-over: remove exactly the stale holder's file, never "whatever is at L now".
          await removeHolderFile(path, seen.file);
        }
        if (++quickRetries <= 5) continue;
      }
      quickRetries = 0;
      const left = deadline - clock.now();
      if (left <= 0) throw options.timeoutError(seen.state === "held" ? seen.holder : null);
      // Jitter spreads waiters that started together, so they do not all look at the same instant.
      await clock.sleep(Math.min(left, delay * (0.5 + Math.random() / 2)), signal);
      delay = Math.min(MAX_POLL_MS, delay * 2);
    }
  } finally {
    // After a successful rename the staging name no longer exists; otherwise remove our leftovers.
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

export class FileLock implements StoreLock {
  readonly name: string;
  readonly path: string;
  readonly expiresAt: number;
  readonly #token: string;
  readonly #fileName: string;
  readonly #tokenFile: string;
  readonly #clock: Clock;

  constructor(name: string, path: string, holder: LockHolder, clock: Clock) {
    this.name = name;
    this.path = path;
    this.expiresAt = holder.expiresAt;
    this.#token = holder.token;
    this.#fileName = `${holder.token}.json`;
    this.#tokenFile = join(path, this.#fileName);
    this.#clock = clock;
  }

  /** The random token of this acquisition (not a credential: it only names the lock file). */
  get token(): string {
    return this.#token;
  }

  /**
   * Our lease has not run out by our clock, and our file is still the lock (nobody judged us dead and
   * took over). A stat, so cheap enough to ask before every write.
   */
  held(): boolean {
    return this.#clock.now() < this.expiresAt && existsSync(this.#tokenFile);
  }

  /**
   * The lease left by the lock file itself: 0 once our file is gone (a waiter judged us stale and
   * took over, or we released). The end is the one written in our file, which is what every
   * waiter judges us by.
   */
  async remainingMs(): Promise<number> {
    const left = this.expiresAt - this.#clock.now();
    if (left <= 0) return 0;
    try {
      await access(this.#tokenFile);
    } catch {
      return 0;
    }
    return Math.max(0, this.expiresAt - this.#clock.now());
  }

  async release(): Promise<void> {
    // Our file already gone means the lease was taken over: the lock is someone else's now, and
    // removeHolderFile cannot touch it.
    await removeHolderFile(this.path, this.#fileName);
    ownTokens.delete(this.#token);
  }
}
