/**
 * The operator's side of a store, as a library: prepare a store (schema, key, directory),
 * describe it, rotate the key that seals it, and copy connectors between stores, each without
 * losing a refresh that happens meanwhile (every write to a record is a compare-and-set, see
 * sealing.ts and open-store.ts). `tokenkeeper store` only parses flags and prints these reports.
 * Key material is only ever written to a 0600 key file, never returned or printed.
 */
import { link, mkdir, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type Clock, systemClock } from "../core/clock.js";
import { ConfigError, StoreKeyError } from "../core/errors.js";
import { atomicWrite, fsyncDirectory, tempPathFor } from "./atomic-write.js";
import { FileStore } from "./file-store.js";
import {
  isNetworkStore,
  type MigrateStoreReport,
  migrateStore,
  type NetworkStore,
  openStore,
} from "./open-store.js";
import { PostgresStore } from "./postgres-store.js";
import { RedisStore } from "./redis-store.js";
import { generateKey, Keyring, loadKeyring, type RotationReport } from "./sealing.js";
import { defaultStateDir } from "./state-dir.js";
import { parseStoreUrl, type StoreKind, storeKindOf } from "./store-url.js";
import type { Store } from "./types.js";

export interface StoreAdminOptions {
  /** Where TOKENKEEPER_STORE, TOKENKEEPER_KEY, TOKENKEEPER_KEY_FILE and TOKENKEEPER_HOME are read. */
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
}

const KEY_FILE_NAME = "store.key";

export type KeyringIds = { current: string; previous: string[] };

// ---- where things are -----------------------------------------------------------------------

function settle(url: string | undefined, options: StoreAdminOptions) {
  const env = options.env ?? process.env;
  return {
    url: url?.trim() || env.TOKENKEEPER_STORE?.trim() || undefined,
    env,
    clock: options.clock ?? systemClock,
  };
}

/** The key file a new key goes to by default: store.key in the state directory. */
export function defaultKeyFile(env: NodeJS.ProcessEnv): string {
  return join(defaultStateDir(env), KEY_FILE_NAME);
}

/** The key file key rotation edits, or null when the keys come from TOKENKEEPER_KEY. */
export function editableKeyFile(env: NodeJS.ProcessEnv): string | null {
  const file = env.TOKENKEEPER_KEY_FILE?.trim();
  return file ? resolve(file) : null;
}

export function storeKind(store: Store): StoreKind {
  if (store instanceof RedisStore) return "redis";
  if (store instanceof PostgresStore) return "postgres";
  if (store instanceof FileStore) return "file";
  throw new ConfigError(`${store.location} is not a store this command manages`);
}

/** Whether the store URL asks for sealed records: the one store-URL parser decides. */
function sealingRequested(url: string): boolean {
  const parsed = parseStoreUrl(url);
  return parsed.kind !== "file" && parsed.sealed;
}

function isNetworkUrl(url: string | undefined): url is string {
  const kind = url === undefined ? null : storeKindOf(url);
  return kind === "redis" || kind === "postgres";
}

/**
 * The same network store opened without sealing, used only to list names and run migrations
 * (records are never read or written through it). Lets init and info work before a key exists.
 */
async function openKeyless(url: string, env: NodeJS.ProcessEnv, clock: Clock): Promise<NetworkStore> {
  const store = await openStore(url, { env, clock, keyring: null, encrypt: false });
  if (!isNetworkStore(store)) throw new ConfigError(`${store.location} is not a network store`);
  return store;
}

// ---- key files ------------------------------------------------------------------------------

/**
 * Creates a key file holding `ring`, mode 0600, never replacing an existing file: the text is
 * made durable under a temporary name, then hard-linked into place, which fails if the name is
 * taken (two machines or two runs of init at once: the first one's key stands). False when the
 * file already existed.
 */
async function createKeyFile(path: string, ring: Keyring): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const staging = tempPathFor(path);
  await atomicWrite(staging, ring.toKeyFileText().reveal(), { mode: 0o600 });
  try {
    await link(staging, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    await unlink(staging).catch(() => {});
    await fsyncDirectory(dirname(path));
  }
}

/** Replaces a key file's keys atomically (temp file, fsync, rename, directory fsync), mode 0600. */
async function replaceKeyFile(path: string, ring: Keyring): Promise<void> {
  await atomicWrite(path, ring.toKeyFileText().reveal(), { mode: 0o600 });
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

function ringIds(ring: Keyring | null): KeyringIds | null {
  return ring ? { current: ring.current.id, previous: ring.previous.map((k) => k.id) } : null;
}

// ---- init -----------------------------------------------------------------------------------

export interface InitReport {
  ok: true;
  store: string;
  kind: StoreKind;
  encrypted: boolean;
  /** PostgreSQL: migrations applied by this run and the schema version now; null otherwise. */
  migrations: { applied: number[]; current: number } | null;
  /** The sealing key (never its material); null for an unsealed store. */
  key: { id: string; file: string | null; created: boolean; source: "TOKENKEEPER_KEY" | "key file" } | null;
  /** File store: the directory. */
  directory?: string;
  connectors: number;
}

/**
 * Prepares a store. PostgreSQL: applies the schema migrations. Redis and PostgreSQL: settles the
 * sealing key (the configured one, else a key file at the default place, else a new key in a new
 * key file) and checks that every existing record opens with it. File store: creates the
 * directory (0700).
 */
export async function initStore(
  url: string | undefined,
  options: StoreAdminOptions = {},
): Promise<InitReport> {
  const where = settle(url, options);
  if (!isNetworkUrl(where.url)) return initFileStore(where.url, where.env, where.clock);
  const target = where.url;
  const admin = await openKeyless(target, where.env, where.clock);
  try {
    const kind = storeKind(admin);
    const applied = await admin.migrate();
    const names = await admin.list();
    let key: InitReport["key"] = null;
    if (sealingRequested(target)) {
      const settled = await ensureKey(where.env, admin.location, names.length);
      key = settled.report;
      await checkReadable(target, settled.ring, where.env, where.clock, names);
    }
    return {
      ok: true,
      store: admin.location,
      kind,
      encrypted: sealingRequested(target),
      migrations: kind === "postgres" ? applied : null,
      key,
      connectors: names.length,
    };
  } finally {
    await admin.close();
  }
}

/**
 * The key to seal with: the configured one, else an existing key file at the default place,
 * else a new key in a new key file. A new key is refused for a store that already holds
 * records: they are sealed under a key we do not have, and a second key would split the store.
 */
async function ensureKey(
  env: NodeJS.ProcessEnv,
  location: string,
  connectors: number,
): Promise<{ ring: Keyring; report: NonNullable<InitReport["key"]> }> {
  const configured = await loadKeyringIfPresent(env);
  if (configured) return configured;
  const file = editableKeyFile(env) ?? defaultKeyFile(env);
  if (!(await fileExists(file))) {
    if (connectors > 0) {
      throw new StoreKeyError(
        `${location} already holds ${connectors} connector(s) sealed under a key that is not configured here; ` +
          "set TOKENKEEPER_KEY_FILE (or --key-file) to the key file the other machines use instead of creating a new key",
        { store: location, connectors },
      );
    }
    const created = new Keyring(generateKey());
    if (await createKeyFile(file, created)) {
      return { ring: created, report: { id: created.current.id, file, created: true, source: "key file" } };
    }
    // Lost a race with another init: use the key that won.
  }
  const ring = (await loadKeyring({ TOKENKEEPER_KEY_FILE: file }))!;
  return { ring, report: { id: ring.current.id, file, created: false, source: "key file" } };
}

/** The configured keyring, or null when no key is configured. */
async function loadKeyringIfPresent(
  env: NodeJS.ProcessEnv,
): Promise<{ ring: Keyring; report: NonNullable<InitReport["key"]> } | null> {
  const file = editableKeyFile(env);
  // A named key file that does not exist yet is where init creates the key.
  if (file && !env.TOKENKEEPER_KEY?.trim() && !(await fileExists(file))) return null;
  const ring = await loadKeyring(env);
  if (!ring) return null;
  const report = file
    ? { id: ring.current.id, file, created: false, source: "key file" as const }
    : { id: ring.current.id, file: null, created: false, source: "TOKENKEEPER_KEY" as const };
  return { ring, report };
}

/** Every existing record must open with the key init settled on; otherwise say which do not. */
async function checkReadable(
  url: string,
  ring: Keyring,
  env: NodeJS.ProcessEnv,
  clock: Clock,
  names: string[],
): Promise<void> {
  if (names.length === 0) return;
  const store = await openStore(url, { env, clock, keyring: ring });
  try {
    const unreadable: string[] = [];
    for (const name of names) {
      try {
        await store.get(name);
      } catch (error) {
        if (!(error instanceof StoreKeyError)) throw error;
        unreadable.push(name);
      }
    }
    if (unreadable.length > 0) {
      throw new StoreKeyError(
        `${store.location}: ${unreadable.length} connector(s) cannot be opened with the configured key ` +
          `(${unreadable.slice(0, 5).join(", ")}${unreadable.length > 5 ? ", …" : ""}); ` +
          "add the key they were sealed with as a previous key",
        { store: store.location, unreadable },
      );
    }
  } finally {
    await store.close();
  }
}

async function initFileStore(
  url: string | undefined,
  env: NodeJS.ProcessEnv,
  clock: Clock,
): Promise<InitReport> {
  const store = await openStore(url, { env, clock });
  try {
    if (!(store instanceof FileStore)) throw new ConfigError(`${store.location} is not a file store`);
    // Listing creates the directory tree (0700) and refuses one that others can read.
    const names = await store.list();
    return {
      ok: true,
      store: store.location,
      kind: "file",
      encrypted: false,
      migrations: null,
      key: null,
      directory: store.dir,
      connectors: names.length,
    };
  } finally {
    await store.close();
  }
}

// ---- info -----------------------------------------------------------------------------------

export interface StoreInfo {
  store: string;
  kind: StoreKind;
  encrypted: boolean;
  keyring: KeyringIds | null;
  connectors: number;
  directory?: string;
  warnings: string[];
}

/** Where the store is (password redacted), its kind, sealing, key ids and connector count. Needs no key. */
export async function describeStore(
  url: string | undefined,
  options: StoreAdminOptions = {},
): Promise<StoreInfo> {
  const where = settle(url, options);
  const warnings: string[] = [];
  if (isNetworkUrl(where.url)) {
    const sealed = sealingRequested(where.url);
    const ring = sealed ? await loadKeyring(where.env) : null;
    if (sealed && !ring) {
      warnings.push("no key is configured (TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE): records cannot be read");
    }
    const store = await openKeyless(where.url, where.env, where.clock);
    try {
      return {
        store: store.location,
        kind: storeKind(store),
        encrypted: sealed,
        keyring: ringIds(ring),
        connectors: (await store.list()).length,
        warnings,
      };
    } finally {
      await store.close();
    }
  }
  const store = await openStore(where.url, { env: where.env, clock: where.clock });
  try {
    return {
      store: store.location,
      kind: storeKind(store),
      encrypted: false,
      keyring: null,
      connectors: (await store.list()).length,
      ...(store instanceof FileStore ? { directory: store.dir } : {}),
      warnings,
    };
  } finally {
    await store.close();
  }
}

// ---- key rotation ---------------------------------------------------------------------------

/**
 * One step of key rotation, in the order that keeps every machine able to read every record:
 * add (a new key, readable everywhere before anything is sealed under it), promote (re-seal under
 * it, then make it current), reseal (what a machine still on the old key wrote meanwhile),
 * retire (re-seal once more, then drop the old key).
 */
export type RotationStep =
  | { step: "add" }
  | { step: "promote"; keyId: string }
  | { step: "reseal" }
  | { step: "retire"; keyId: string };

export interface RotateReport {
  ok: true;
  store: string;
  step: RotationStep["step"];
  keyFile: string | null;
  keyring: KeyringIds;
  /** add: the new key's id. */
  added?: string;
  /** retire: the removed key's id. */
  retired?: string;
  /** Records re-sealed under the current key, and records that already were. */
  resealed: number;
  unchanged: number;
  connectors: { resealed: string[]; unchanged: string[] };
}

/**
 * Runs one rotation step on a network store. The key file (TOKENKEEPER_KEY_FILE) is replaced
 * atomically; every record write is a compare-and-set, so a refresh that lands meanwhile is
 * re-sealed, never overwritten.
 */
export async function rotateStoreKey(
  url: string | undefined,
  rotation: RotationStep,
  options: StoreAdminOptions = {},
): Promise<RotateReport> {
  const where = settle(url, options);
  if (!isNetworkUrl(where.url)) {
    throw new ConfigError(
      "rotate-key is for Redis and PostgreSQL stores (the file store is not sealed): give --store or set TOKENKEEPER_STORE",
    );
  }
  if (!sealingRequested(where.url))
    throw new ConfigError("the store URL says encrypt=false: there is no key to rotate");
  const env = where.env;
  const ring = await loadKeyring(env);
  if (!ring) {
    throw new StoreKeyError(
      "no key is configured: set TOKENKEEPER_KEY_FILE or pass --key-file (`tokenkeeper store init` creates one)",
    );
  }
  const keyFile = editableKeyFile(env);
  const step = rotation.step;
  if (step !== "reseal" && !keyFile) {
    throw new ConfigError(
      `rotate-key --${step} edits a key file, but the keys come from TOKENKEEPER_KEY: ` +
        "put them in a file (mode 0600) and set TOKENKEEPER_KEY_FILE or pass --key-file",
    );
  }

  const store = await openStore(where.url, { env, clock: where.clock, keyring: ring });
  try {
    if (!isNetworkStore(store)) throw new ConfigError(`${store.location} is not a network store`);
    const base = { ok: true as const, store: store.location, step, keyFile };
    const counts = (r: RotationReport | null) => ({
      resealed: r?.resealed.length ?? 0,
      unchanged: r?.unchanged.length ?? 0,
      connectors: { resealed: r?.resealed ?? [], unchanged: r?.unchanged ?? [] },
    });
    switch (rotation.step) {
      case "add": {
        // Step 1: readable everywhere before anything is sealed under it. No record changes.
        const added = generateKey();
        const next = new Keyring(ring.current, [...ring.previous, added]);
        await replaceKeyFile(keyFile!, next);
        return { ...base, keyring: ringIds(next)!, added: added.id, ...counts(null) };
      }
      case "promote": {
        const key = ring.find(rotation.keyId.trim());
        if (!key) {
          throw new ConfigError(
            `key ${rotation.keyId} is not in ${keyFile} (it holds ${ring.ids.join(", ")}); add it first with --add`,
          );
        }
        const next = ring.rotatedTo(key);
        // Re-seal first, then edit the file: if the store fails midway, the key file is as it was
        // and running the same command again finishes the job.
        const resealed = await store.rotateKey(next);
        await replaceKeyFile(keyFile!, next);
        return { ...base, keyring: ringIds(next)!, ...counts(resealed) };
      }
      case "reseal": {
        const resealed = await store.rotateKey(ring);
        return { ...base, keyring: ringIds(ring)!, ...counts(resealed) };
      }
      case "retire": {
        const id = rotation.keyId.trim();
        if (!ring.find(id))
          throw new ConfigError(`key ${id} is not in ${keyFile} (it holds ${ring.ids.join(", ")})`);
        // Refuses the current key before anything is touched.
        const next = ring.without(id);
        // Nothing may stay sealed under the key we drop: re-seal everything under the current key first.
        const resealed = await store.rotateKey(ring);
        await replaceKeyFile(keyFile!, next);
        return { ...base, keyring: ringIds(next)!, retired: id, ...counts(resealed) };
      }
    }
  } finally {
    await store.close();
  }
}

// ---- migration ------------------------------------------------------------------------------

export interface CopyStoreReport extends MigrateStoreReport {
  ok: true;
  from: string;
  to: string;
}

/**
 * Opens both stores by URL and copies connectors (default: all) from one to the other, each
 * under the source's refresh lock (see migrateStore). Both stores use the same key.
 */
export async function copyStore(
  from: string,
  to: string,
  names: string[] = [],
  options: StoreAdminOptions = {},
): Promise<CopyStoreReport> {
  const env = options.env ?? process.env;
  const clock = options.clock ?? systemClock;
  const source = await openStore(from, { env, clock });
  let target: Store | null = null;
  try {
    target = await openStore(to, { env, clock });
    if (source.location === target.location)
      throw new ConfigError(`--from and --to are the same store (${source.location})`);
    const result = await migrateStore(source, target, names.length > 0 ? { names } : {});
    return {
      ok: true,
      from: source.location,
      to: target.location,
      copied: result.copied,
      passes: result.passes,
    };
  } finally {
    await source.close();
    await target?.close();
  }
}
