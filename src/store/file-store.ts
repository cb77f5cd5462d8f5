/**
 * The default store: one JSON file per connector in a private directory on this machine.
 *
 *   <dir>/                                   0700, refused (like ssh) when group or others have access
 *   <dir>/connectors/<name>.json             0600  {"version": N, "record": {…}}
 *   <dir>/connectors/<name>.json.corrupt-<time>   a damaged file moved aside: kept, never deleted
 *   <dir>/locks/<name>.lock/                 the refresh lock (file-lock.ts)
 *   <dir>/locks/<name>.write/                the write mutex that makes put/delete compare-and-set
 *   .<…>.<pid>-<random>.tmp                  writes in flight; ignored by readers, swept once stale
 *
 * Reading refuses, the way ssh refuses a private key, a token file that is a symlink (never
 * followed: O_NOFOLLOW), not owned by the current user, or open to group or others. The error names
 * the file and the command that fixes it, never any content.
 *
 * Compare-and-set across processes: put and delete hold a short per-connector write mutex (a file
 * lock separate from the refresh lock, which a refresher holds for a whole token-endpoint round
 * trip) around read version → compare → write → rename. Without it two processes that read version
 * N could both rename their file into place, and both believe they wrote N+1.
 */
import { constants, type Stats } from "node:fs";
import { access, lstat, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type Clock, systemClock } from "../core/clock.js";
import {
  ConflictError,
  LockTimeoutError,
  StoreCorruptError,
  StorePermissionError,
  StoreUnavailableError,
} from "../core/errors.js";
import { assertConnectorName, type ConnectorRecord, parseRecord, serializeRecord } from "../core/record.js";
import { number, object, ShapeError } from "../core/shape.js";
import { atomicWrite, fsyncDirectory, parseTempName } from "./atomic-write.js";
import { acquireFileLock, type FileLock, isProcessAlive, lockState, readLockHolder } from "./file-lock.js";
import { privacyProblem } from "./privacy.js";
import type { GetOptions, LockOptions, Store, StoredRecord, StoreLock } from "./types.js";

export interface FileStoreOptions {
  /** The state directory (see defaultStateDir). Created 0700 when missing. */
  dir: string;
  clock?: Clock;
  /** Bound on waiting for another process's write to the same connector. Default 10 s. */
  writeWaitMs?: number;
  /** Test hooks for crash tests. Not for production use. */
  hooks?: FileStoreHooks;
}

export interface FileStoreHooks {
  /** Runs in put after the new file is durable under its temp name and before it is renamed into place. */
  beforeRename?: (name: string) => Promise<void>;
}

/**
 * The write mutex is held for one read and one durable write (milliseconds). Its lease only matters
 * when a writer stalls or dies on another host; a dead writer on this host is detected by pid.
 */
const WRITE_LEASE_MS = 30_000;
const DEFAULT_WRITE_WAIT_MS = 10_000;
/**
 * How long a refresher waits, before sending, for another process's write to the same connector
 * to end. A write takes milliseconds; one still running after this has stalled.
 */
const WRITE_CHECK_WAIT_MS = 2_000;
/** A temp file of a dead writer is removed once it is this old: never a write still in flight. */
const TEMP_SWEEP_AGE_MS = 60_000;

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;

const envelopeSchema = object({ version: number({ int: true, min: 1 }) });

type Loaded =
  | { kind: "absent" }
  | { kind: "ok"; version: number; record: ConnectorRecord }
  | { kind: "corrupt"; error: StoreCorruptError };

/**
 * Puts and deletes in this process queue per connector before taking the cross-process mutex, so
 * same-process writers never poll each other (and a test's frozen clock cannot stall them). Each
 * queued operation is itself bounded by `writeWaitMs`. Keyed by absolute path: two FileStores on the
 * same directory share the queue.
 */
const writeQueues = new Map<string, Promise<unknown>>();

function serialized<T>(key: string, run: () => Promise<T>): Promise<T> {
  const previous = writeQueues.get(key) ?? Promise.resolve();
  const result = previous.then(run);
  const tail = result.then(
    () => {},
    () => {},
  );
  writeQueues.set(key, tail);
  void tail.then(() => {
    if (writeQueues.get(key) === tail) writeQueues.delete(key);
  });
  return result;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException)?.code;
}

/** Quotes a path for a copy-pasteable shell command (macOS paths contain spaces). */
function sh(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

function permissionError(path: string, kind: "file" | "directory", st: Stats, uid: number | undefined) {
  const problem = privacyProblem(st, uid);
  if (problem === "owner") {
    return new StorePermissionError(
      `${path} is owned by uid ${st.uid}, not by the current user (uid ${uid}); tokenkeeper refuses to use it. ` +
        `Fix: run as that user, or \`chown ${uid} ${sh(path)}\``,
      { file: path, owner: st.uid },
    );
  }
  if (problem === "mode") {
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    const wanted = kind === "file" ? "600" : "700";
    return new StorePermissionError(
      `${path} is accessible by group or others (mode ${mode}); tokenkeeper refuses to use it. ` +
        `Fix: \`chmod ${wanted} ${sh(path)}\``,
      { file: path, mode },
    );
  }
  return null;
}

function symlinkError(path: string): StorePermissionError {
  return new StorePermissionError(
    `${path} is a symbolic link; tokenkeeper never follows links for token files. ` +
      `Fix: replace the link with the file itself (\`mv <target> ${sh(path)}\`) or remove it and log in again`,
    { file: path },
  );
}

/**
 * Reads a token file after checking, on the open descriptor (so nothing can be swapped in between),
 * that it is a private regular file of ours. Null when absent.
 */
async function readPrivateFile(path: string, uid: number | undefined): Promise<Buffer | null> {
  if (O_NOFOLLOW === 0) {
    // No O_NOFOLLOW (Windows): a best-effort check before opening.
    const st = await lstat(path).catch((e) => (errno(e) === "ENOENT" ? null : Promise.reject(e)));
    if (!st) return null;
    if (st.isSymbolicLink()) throw symlinkError(path);
  }
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang the open; fstat refuses it below.
    fh = await open(path, constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (error) {
    const code = errno(error);
    if (code === "ENOENT") return null;
    // ELOOP on Linux and macOS, EMLINK on FreeBSD: the last component is a symlink.
    if (code === "ELOOP" || code === "EMLINK") throw symlinkError(path);
    throw error;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new StorePermissionError(
        `${path} is not a regular file; tokenkeeper refuses to read it. Fix: remove it`,
        {
          file: path,
        },
      );
    }
    const problem = permissionError(path, "file", st, uid);
    if (problem) throw problem;
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Strict: a damaged byte must not turn silently into U+FFFD inside a token. We only write valid UTF-8. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Parses a store file. Messages name the file and the field, never content. */
function decodeFile(bytes: Uint8Array, file: string): { version: number; record: ConnectorRecord } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new StoreCorruptError(`${file} is not valid UTF-8 (damaged)`, { file });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, which holds tokens: never pass it on.
    const why = text.length === 0 ? "empty" : "truncated or damaged";
    throw new StoreCorruptError(`${file} is not valid JSON (${why})`, { file });
  }
  let envelope: { version: number };
  try {
    envelope = envelopeSchema(data, "");
  } catch (error) {
    if (!(error instanceof ShapeError)) throw error;
    const path = error.path;
    throw new StoreCorruptError(`${file} is not a valid store file: field "${path}" is missing or invalid`, {
      file,
      field: path,
    });
  }
  return { version: envelope.version, record: parseRecord((data as { record?: unknown }).record, file) };
}

function encodeFile(version: number, record: ConnectorRecord): string {
  return `${JSON.stringify({ version, record: serializeRecord(record) }, null, 2)}\n`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (errno(error) === "ENOENT") return false;
    throw error;
  }
}

function toStored(loaded: Loaded): StoredRecord | null {
  return loaded.kind === "ok" ? { record: loaded.record, version: loaded.version } : null;
}

export class FileStore implements Store {
  readonly location: string;
  readonly dir: string;
  readonly #connectors: string;
  readonly #locks: string;
  readonly #clock: Clock;
  readonly #writeWaitMs: number;
  readonly #hooks: FileStoreHooks;
  readonly #uid: number | undefined;
  #ready: Promise<void> | undefined;

  constructor(options: FileStoreOptions) {
    this.dir = resolve(options.dir);
    // A real file URL (spaces and '#' escaped, Windows drive letters right), so that what `status`
    // shows can be given back as a store URL.
    this.location = pathToFileURL(this.dir).href;
    this.#connectors = join(this.dir, "connectors");
    this.#locks = join(this.dir, "locks");
    this.#clock = options.clock ?? systemClock;
    this.#writeWaitMs = options.writeWaitMs ?? DEFAULT_WRITE_WAIT_MS;
    this.#hooks = options.hooks ?? {};
    this.#uid = process.platform === "win32" ? undefined : process.getuid?.();
  }

  /** The file that holds a connector's record. */
  fileFor(name: string): string {
    assertConnectorName(name);
    return join(this.#connectors, `${name}.json`);
  }

  async get(name: string, options: GetOptions = {}): Promise<StoredRecord | null> {
    const file = this.fileFor(name);
    await this.#prepare();
    const loaded = await this.#load(file);
    if (loaded.kind !== "corrupt") return toStored(loaded);
    if (options.readOnly) {
      // An observer reports the damage and leaves the file where it is; the next write moves it.
      throw new StoreCorruptError(
        `${loaded.error.message}; left in place (the next command that writes this connector moves it aside)`,
        { ...loaded.error.fields, connector: name, file },
      );
    }
    // Move it aside under the write mutex, after looking again: a put may have replaced the file
    // since we read it, and a good file must never be moved aside.
    return this.#withWriteMutex(name, async () => {
      const again = await this.#load(file);
      if (again.kind === "corrupt") throw await this.#moveAside(name, file, again.error);
      return toStored(again);
    });
  }

  async list(): Promise<string[]> {
    await this.#prepare();
    await this.#sweep();
    const names: string[] = [];
    for (const entry of await readdir(this.#connectors)) {
      // Temp files start with "." (a connector name cannot), moved-aside files do not end in .json.
      if (!entry.endsWith(".json") || entry.startsWith(".")) continue;
      const name = entry.slice(0, -".json".length);
      try {
        assertConnectorName(name);
        names.push(name);
      } catch {
        // Not a file this store wrote; leave it alone.
      }
    }
    return names.sort();
  }

  async put(name: string, record: ConnectorRecord, expectedVersion: number | null): Promise<number> {
    const file = this.fileFor(name);
    await this.#prepare();
    return this.#withWriteMutex(name, async (mutex) => {
      const current = await this.#load(file);
      if (current.kind === "corrupt") throw await this.#moveAside(name, file, current.error);
      const actual = current.kind === "ok" ? current.version : null;
      if (actual !== expectedVersion) throw new ConflictError(name, expectedVersion, actual);
      const version = (actual ?? 0) + 1;
      await atomicWrite(file, encodeFile(version, record), {
        beforeRename: async () => {
          await this.#hooks.beforeRename?.(name);
          // The last moment to notice we stalled past the mutex lease and someone else may be
          // writing: give up rather than publish a version that was never compared.
          if (!mutex.held()) {
            throw new StoreUnavailableError(
              `gave up writing connector "${name}": the write took longer than its ${WRITE_LEASE_MS} ms lease; nothing was written`,
              { store: this.location, connector: name },
            );
          }
        },
      });
      return version;
    });
  }

  async delete(name: string, expectedVersion?: number): Promise<boolean> {
    const file = this.fileFor(name);
    await this.#prepare();
    return this.#withWriteMutex(name, async () => {
      const current = await this.#load(file);
      if (current.kind === "corrupt") throw await this.#moveAside(name, file, current.error);
      if (current.kind === "absent") return false;
      if (expectedVersion !== undefined && current.version !== expectedVersion) {
        throw new ConflictError(name, expectedVersion, current.version);
      }
      await unlink(file);
      await fsyncDirectory(this.#connectors);
      return true;
    });
  }

  async lock(name: string, options: LockOptions): Promise<StoreLock> {
    assertConnectorName(name);
    await this.#prepare();
    const lock = await acquireFileLock(join(this.#locks, `${name}.lock`), name, {
      ...options,
      clock: this.#clock,
      timeoutError: (holder) =>
        new LockTimeoutError(name, options.waitMs, {
          store: this.location,
          lockFile: join(this.#locks, `${name}.lock`),
          ...(holder
            ? { holderPid: holder.pid, holderHost: holder.hostname, holderExpiresAt: holder.expiresAt }
            : {}),
        }),
    });
    return {
      name,
      expiresAt: lock.expiresAt,
      held: () => lock.held(),
      release: () => lock.release(),
      remainingMs: () => this.#saveableWithin(name, lock),
    };
  }

  async close(): Promise<void> {}

  // ---- internals ---------------------------------------------------------------------------

  /** Creates and checks the directories once per store; a failure is retried on the next call. */
  #prepare(): Promise<void> {
    this.#ready ??= this.#createDirectories().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #createDirectories(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw this.#unusableDirectory(error);
    }
    // The state directory itself may be a symlink (to another disk, say); what it points to must be private.
    await this.#checkDirectory(this.dir, await stat(this.dir));
    for (const sub of [this.#connectors, this.#locks]) {
      await mkdir(sub, { mode: 0o700 }).catch((e) => (errno(e) === "EEXIST" ? undefined : Promise.reject(e)));
      await this.#checkDirectory(sub, await lstat(sub));
    }
    await this.#sweep();
  }

  /**
   * The state directory cannot be created: a file is in the way (TOKENKEEPER_HOME naming a
   * regular file, or a path through one), or we may not create it. Exit 74, like any other state
   * path tokenkeeper refuses, with the path and the fix.
   */
  #unusableDirectory(error: unknown): unknown {
    const code = errno(error);
    if (code === "EEXIST" || code === "ENOTDIR") {
      return new StorePermissionError(
        `the state directory ${this.dir} cannot be used: it${code === "ENOTDIR" ? ", or a directory above it," : ""} is a file, not a directory. ` +
          "Fix: point TOKENKEEPER_HOME (or --store) at a directory, or move the file away",
        { file: this.dir, errno: code },
      );
    }
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      return new StorePermissionError(
        `the state directory ${this.dir} cannot be created (${code}). Fix: create it yourself with mode 700, or point TOKENKEEPER_HOME at a directory you own`,
        { file: this.dir, errno: code },
      );
    }
    return error;
  }

  async #checkDirectory(path: string, st: Stats): Promise<void> {
    if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new StorePermissionError(
        `${path} is not a plain directory; tokenkeeper refuses to use it. Fix: remove it`,
        {
          file: path,
        },
      );
    }
    const problem = permissionError(path, "directory", st, this.#uid);
    if (problem) throw problem;
  }

  async #load(file: string): Promise<Loaded> {
    const bytes = await readPrivateFile(file, this.#uid);
    if (bytes === null) return { kind: "absent" };
    try {
      return { kind: "ok", ...decodeFile(bytes, file) };
    } catch (error) {
      if (error instanceof StoreCorruptError) return { kind: "corrupt", error };
      throw error;
    }
  }

  /**
   * The refresh lock's lease left, once we know a write could be saved now. The result of a
   * refresh is saved under the connector's write lock, which another process holds for the
   * milliseconds of its own write; one that has held it for longer has stalled (paused, or hung
   * on a dead disk) and would keep our save waiting past our lease. A refresh must not be sent
   * when its result cannot be saved, so that is a StoreUnavailableError here, before the token
   * request, not after it.
   */
  async #saveableWithin(name: string, lock: FileLock): Promise<number> {
    if ((await lock.remainingMs()) === 0) return 0;
    const path = join(this.#locks, `${name}.write`);
    const deadline = this.#clock.now() + WRITE_CHECK_WAIT_MS;
    for (
      let pollMs = 5;
      (await lockState(path, this.#clock)) === "live";
      pollMs = Math.min(100, pollMs * 2)
    ) {
      const left = deadline - this.#clock.now();
      if (left <= 0) {
        const holder = await readLockHolder(path).catch(() => null);
        throw new StoreUnavailableError(
          `another process${holder ? ` (pid ${holder.pid} on ${holder.hostname})` : ""} has held the write lock of connector "${name}" ` +
            `for more than ${WRITE_CHECK_WAIT_MS} ms; a refresh now could not be saved, so none was sent`,
          {
            store: this.location,
            connector: name,
            lockFile: path,
            ...(holder ? { holderPid: holder.pid } : {}),
          },
        );
      }
      await this.#clock.sleep(Math.min(pollMs, left));
    }
    try {
      await access(this.#connectors, constants.W_OK);
    } catch {
      throw new StorePermissionError(
        `${this.#connectors} is not writable by the current user; a refresh now could not be saved, so none was sent. ` +
          `Fix: \`chmod 700 ${sh(this.#connectors)}\` as its owner`,
        { file: this.#connectors },
      );
    }
    return lock.remainingMs();
  }

  async #withWriteMutex<T>(name: string, run: (mutex: FileLock) => Promise<T>): Promise<T> {
    const path = join(this.#locks, `${name}.write`);
    return serialized(path, async () => {
      const mutex = await acquireFileLock(path, name, {
        leaseMs: WRITE_LEASE_MS,
        waitMs: this.#writeWaitMs,
        clock: this.#clock,
        timeoutError: (holder) =>
          new StoreUnavailableError(
            `another process${holder ? ` (pid ${holder.pid} on ${holder.hostname})` : ""} has been writing connector "${name}" ` +
              `for more than ${this.#writeWaitMs} ms; if no tokenkeeper process is running, remove ${sh(path)}`,
            { store: this.location, connector: name, lockFile: path, holderPid: holder?.pid },
          ),
      });
      try {
        return await run(mutex);
      } finally {
        await mutex.release();
      }
    });
  }

  /**
   * Moves a damaged file to `<file>.corrupt-<time>` and returns the error to throw. Called with the
   * write mutex held, so no writer replaces the file meanwhile and the chosen name stays free.
   */
  async #moveAside(name: string, file: string, cause: StoreCorruptError): Promise<StoreCorruptError> {
    const login = `authorize again with \`tokenkeeper login <mcp-server-url> --name ${name}\``;
    try {
      // Formats the injected clock's time (never the wall clock); ':' is not allowed in Windows names.
      const stamp = new Date(this.#clock.now()).toISOString().replace(/:/g, "-");
      // Never overwrite an earlier moved-aside file (two corruptions within one millisecond of clock).
      let movedTo = `${file}.corrupt-${stamp}`;
      for (let i = 2; await exists(movedTo); i++) {
        if (i > 1000) throw new Error("no free name to move the file aside");
        movedTo = `${file}.corrupt-${stamp}-${i}`;
      }
      await rename(file, movedTo);
      await fsyncDirectory(this.#connectors);
      return new StoreCorruptError(
        `${cause.message}; it was moved aside to ${movedTo} (kept for inspection, not deleted): ${login}`,
        { ...cause.fields, connector: name, file, movedTo },
        { cause },
      );
    } catch (error) {
      const why = errno(error) ?? "unknown error";
      return new StoreCorruptError(`${cause.message}; it could not be moved aside (${why}): ${login}`, {
        ...cause.fields,
        connector: name,
        file,
      });
    }
  }

  /**
   * Removes temp files and staging directories left by writers that crashed: only once their
   * process is gone from this host and they are old by our clock, so a write in flight (here, or
   * from another host sharing the directory) is never pulled from under its writer. Best effort.
   */
  async #sweep(): Promise<void> {
    const now = this.#clock.now();
    for (const dir of [this.#connectors, this.#locks]) {
      let entries: string[];
      try {
        entries = await readdir(dir);
      } catch {
        continue;
      }
      for (const entry of entries) {
        const temp = parseTempName(entry);
        if (!temp || isProcessAlive(temp.pid)) continue;
        const path = join(dir, entry);
        try {
          const st = await lstat(path);
          if (now - st.mtimeMs > TEMP_SWEEP_AGE_MS) await rm(path, { recursive: true, force: true });
        } catch {
          // Gone already, or not ours to remove: either way nothing to do.
        }
      }
    }
  }
}
