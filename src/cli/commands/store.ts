/**
 * `tokenkeeper store init | info | rotate-key | migrate`: the operator's side of a shared store.
 * Preparing a store (schema, key, directory), describing it, rotating the key that seals it,
 * and moving connectors between stores, each without losing a refresh that happens meanwhile:
 * every write to a record is a compare-and-set (see src/store/sealing.ts and open-store.ts).
 * Key material is only ever written to a 0600 key file, never printed.
 */
import { link, mkdir, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { ConfigError, EXIT, StoreKeyError } from "../../core/errors.js";
import { atomicWrite, fsyncDirectory, tempPathFor } from "../../store/atomic-write.js";
import { FileStore } from "../../store/file-store.js";
import {
  isNetworkStore,
  type MigrateStoreReport,
  migrateStore,
  type NetworkStore,
  openStore,
} from "../../store/open-store.js";
import { PostgresStore } from "../../store/postgres-store.js";
import { RedisStore } from "../../store/redis-store.js";
import { generateKey, Keyring, loadKeyring, type RotationReport } from "../../store/sealing.js";
import { defaultStateDir } from "../../store/state-dir.js";
import type { Store } from "../../store/types.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import type { CliContext } from "../context.js";
import { writeJson, writeLine } from "../output.js";

const USAGE = `Usage: tokenkeeper store <init|info|rotate-key|migrate> [options]

  init [--store URL] [--key-file PATH]
      Prepares a store. PostgreSQL: applies the schema migrations (numbered, idempotent, safe to
      run from several machines at once). Redis and PostgreSQL: when no key is configured,
      creates one in a new key file (mode 0600; default $TOKENKEEPER_HOME/store.key, else
      store.key in the state directory) and prints how to set TOKENKEEPER_KEY_FILE. An existing
      key file is never overwritten. File store: creates the directory (mode 0700).

  info [--store URL] [--key-file PATH]
      Where the store is (password redacted), its kind, whether it seals records and with which
      key ids, and how many connectors it holds. Works without a key.

  rotate-key [--store URL] [--key-file PATH] [--add | --promote KEY_ID | --retire KEY_ID]
      Rotates the key that seals a network store, in the order that keeps every machine able
      to read every record:
        1. --add            creates a key and adds it to the key file as a previous key (readable,
                            not used for writing). Copy the key file to every machine.
        2. --promote ID     on one machine: re-seals every record under key ID (compare-and-set:
                            a refresh that lands meanwhile is re-sealed, never overwritten), then
                            makes ID the current key in the key file.
        3. (no option)      after every machine has the promoted key file: re-seals whatever a
                            machine still on the old key wrote meanwhile.
        4. --retire ID      re-seals once more, then removes key ID from the key file.
      The key file (--key-file, else TOKENKEEPER_KEY_FILE) is replaced atomically. Step 3 also
      works with keys given in TOKENKEEPER_KEY; the others edit a key file.

  migrate --from URL --to URL [NAME...]
      Copies connectors (default: all) from one store to another, each under the source's
      refresh lock, and copies again any that a refresh rotated meanwhile. Both stores use the
      same key (TOKENKEEPER_KEY, TOKENKEEPER_KEY_FILE or --key-file). The target must be
      initialized. Afterwards, switch every machine to the new store before the next refresh.

Every subcommand takes --json: one JSON object on stdout (on failure: {"error": {code, message, …}}).
Exit codes: 0 done, 64 usage, 74 store I/O or permissions, 75 store unreachable or busy (try
again), 78 configuration or key problem.`;

export const storeCommand = interactiveCommand({
  name: "store",
  summary: "prepare, describe, re-key or migrate the connector store",
  usage: USAGE,
  run,
});

const KEY_FILE_NAME = "store.key";

type Kind = "file" | "redis" | "postgres";

interface CommonOptions {
  store?: string | undefined;
  "key-file"?: string | undefined;
  json?: boolean | undefined;
}

const COMMON = {
  store: { type: "string" },
  "key-file": { type: "string" },
  json: { type: "boolean" },
} as const;

async function run(args: string[], ctx: CliContext): Promise<number> {
  const [sub, ...rest] = args;
  const noPositionals = { positionals: false };
  switch (sub) {
    case "init":
      return init(parseFlags(rest, COMMON, noPositionals).values, ctx);
    case "info":
      return info(parseFlags(rest, COMMON, noPositionals).values, ctx);
    case "rotate-key": {
      const { values } = parseFlags(
        rest,
        { ...COMMON, add: { type: "boolean" }, promote: { type: "string" }, retire: { type: "string" } },
        noPositionals,
      );
      const steps = [values.add, values.promote, values.retire].filter((v) => v !== undefined);
      if (steps.length > 1) throw new UsageError("give at most one of --add, --promote, --retire");
      return rotateKey(values, ctx);
    }
    case "migrate": {
      const { values, positionals } = parseFlags(rest, {
        ...COMMON,
        from: { type: "string" },
        to: { type: "string" },
      });
      if (!values.from || !values.to) throw new UsageError("migrate needs --from URL and --to URL");
      if (values.store) throw new UsageError("migrate takes --from and --to, not --store");
      return migrate(values.from, values.to, positionals, values, ctx);
    }
    case undefined:
      throw new UsageError("give a subcommand");
    default:
      throw new UsageError(`unknown subcommand "${sub}"`);
  }
}

// ---- where things are -----------------------------------------------------------------------

function storeUrlOf(values: CommonOptions, ctx: CliContext): string | undefined {
  return values.store?.trim() || ctx.env.TOKENKEEPER_STORE?.trim() || undefined;
}

/** The environment keys are loaded from: --key-file, when given, wins over both variables. */
function keyEnv(values: CommonOptions, ctx: CliContext): NodeJS.ProcessEnv {
  if (!values["key-file"]) return ctx.env;
  const env: NodeJS.ProcessEnv = { ...ctx.env, TOKENKEEPER_KEY_FILE: resolve(values["key-file"]) };
  delete env.TOKENKEEPER_KEY;
  return env;
}

function defaultKeyFile(env: NodeJS.ProcessEnv): string {
  return join(defaultStateDir(env), KEY_FILE_NAME);
}

/** The key file rotate-key edits, or null when the keys come from TOKENKEEPER_KEY. */
function editableKeyFile(env: NodeJS.ProcessEnv): string | null {
  const file = env.TOKENKEEPER_KEY_FILE?.trim();
  return file ? resolve(file) : null;
}

function kindOf(store: Store): Kind {
  if (store instanceof RedisStore) return "redis";
  if (store instanceof PostgresStore) return "postgres";
  if (store instanceof FileStore) return "file";
  throw new ConfigError(`${store.location} is not a store this command manages`);
}

const KIND_LABEL: Record<Kind, string> = { file: "file store", redis: "Redis", postgres: "PostgreSQL" };

function sealingRequested(url: string): boolean {
  return !/[?&]encrypt=false(&|$)/.test(url);
}

/**
 * The same network store opened without sealing, used only to list names and run migrations
 * (records are never read or written through it). Lets init and info work before a key exists.
 */
async function openKeyless(url: string, ctx: CliContext): Promise<NetworkStore> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError("the store URL is not a valid URL");
  }
  u.searchParams.set("encrypt", "false");
  const store = await openStore(u.href, { env: ctx.env, clock: ctx.clock, keyring: null });
  if (!isNetworkStore(store)) throw new ConfigError(`${store.location} is not a network store`);
  return store;
}

function isNetworkUrl(url: string | undefined): url is string {
  return url !== undefined && /^(redis|rediss|postgres|postgresql):/i.test(url);
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

function ringJson(ring: Keyring | null): { current: string; previous: string[] } | null {
  return ring ? { current: ring.current.id, previous: ring.previous.map((k) => k.id) } : null;
}

// ---- init -----------------------------------------------------------------------------------

interface InitReport {
  ok: true;
  store: string;
  kind: Kind;
  encrypted: boolean;
  /** PostgreSQL: migrations applied by this run and the schema version now; null otherwise. */
  migrations: { applied: number[]; current: number } | null;
  /** The sealing key (never its material); null for an unsealed store. */
  key: { id: string; file: string | null; created: boolean; source: "TOKENKEEPER_KEY" | "key file" } | null;
  /** File store: the directory. */
  directory?: string;
  connectors: number;
}

async function init(values: CommonOptions, ctx: CliContext): Promise<number> {
  const url = storeUrlOf(values, ctx);
  if (!isNetworkUrl(url)) return initFileStore(url, values, ctx);

  const env = keyEnv(values, ctx);
  const admin = await openKeyless(url, ctx);
  let report: InitReport;
  try {
    const kind = kindOf(admin);
    const applied = await admin.migrate();
    const names = await admin.list();
    let key: InitReport["key"] = null;
    if (sealingRequested(url)) {
      const settled = await ensureKey(env, admin.location, names.length);
      key = settled.report;
      await checkReadable(url, settled.ring, ctx, names);
    }
    report = {
      ok: true,
      store: admin.location,
      kind,
      encrypted: sealingRequested(url),
      migrations: kind === "postgres" ? applied : null,
      key,
      connectors: names.length,
    };
  } finally {
    await admin.close();
  }

  if (values.json) {
    writeJson(ctx, report);
    return EXIT.ok;
  }
  const sealing = report.encrypted ? "records sealed at rest" : "records NOT sealed (encrypt=false)";
  writeLine(ctx.stdout, `Store ${report.store} is ready (${KIND_LABEL[report.kind]}, ${sealing}).`);
  if (report.migrations) {
    const m = report.migrations;
    writeLine(
      ctx.stdout,
      m.applied.length > 0
        ? `Applied schema migrations ${m.applied.join(", ")}; the schema is at version ${m.current}.`
        : `The schema is up to date (version ${m.current}).`,
    );
  }
  const key = report.key;
  if (key?.created) {
    writeLine(ctx.stdout, `Created key ${key.id} in ${key.file} (mode 0600).`);
  } else if (key) {
    writeLine(
      ctx.stdout,
      `Using key ${key.id} from ${key.source === "key file" ? key.file : "TOKENKEEPER_KEY"}.`,
    );
  }
  if (key?.file && env.TOKENKEEPER_KEY_FILE !== key.file) {
    writeLine(ctx.stdout, "Every machine that shares this store needs the key file and this setting:");
    writeLine(ctx.stdout, `  export TOKENKEEPER_KEY_FILE=${shellQuote(key.file)}`);
    writeLine(ctx.stdout, "Copy the file only over a secure channel: it unlocks every token in the store.");
  }
  writeLine(ctx.stdout, `Connectors in the store: ${report.connectors}.`);
  return EXIT.ok;
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
async function checkReadable(url: string, ring: Keyring, ctx: CliContext, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const store = await openStore(url, { env: ctx.env, clock: ctx.clock, keyring: ring });
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
  values: CommonOptions,
  ctx: CliContext,
): Promise<number> {
  const store = await openStore(url, { env: ctx.env, clock: ctx.clock });
  try {
    if (!(store instanceof FileStore)) throw new ConfigError(`${store.location} is not a file store`);
    // Listing creates the directory tree (0700) and refuses one that others can read.
    const names = await store.list();
    if (values["key-file"]) {
      writeLine(
        ctx.stderr,
        "Note: the file store is protected by file permissions, not a key; --key-file is ignored.",
      );
    }
    const report: InitReport = {
      ok: true,
      store: store.location,
      kind: "file",
      encrypted: false,
      migrations: null,
      key: null,
      directory: store.dir,
      connectors: names.length,
    };
    if (values.json) writeJson(ctx, report);
    else {
      writeLine(
        ctx.stdout,
        `Store ${store.location} is ready (file store, directory ${store.dir}, mode 0700).`,
      );
      writeLine(ctx.stdout, `Connectors in the store: ${names.length}.`);
    }
    return EXIT.ok;
  } finally {
    await store.close();
  }
}

// ---- info -----------------------------------------------------------------------------------

async function info(values: CommonOptions, ctx: CliContext): Promise<number> {
  const url = storeUrlOf(values, ctx);
  let report: {
    store: string;
    kind: Kind;
    encrypted: boolean;
    keyring: { current: string; previous: string[] } | null;
    connectors: number;
    directory?: string;
  };
  const warnings: string[] = [];
  if (isNetworkUrl(url)) {
    const ring = sealingRequested(url) ? await loadKeyring(keyEnv(values, ctx)) : null;
    if (sealingRequested(url) && !ring) {
      warnings.push("no key is configured (TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE): records cannot be read");
    }
    const store = await openKeyless(url, ctx);
    try {
      report = {
        store: store.location,
        kind: kindOf(store),
        encrypted: sealingRequested(url),
        keyring: ringJson(ring),
        connectors: (await store.list()).length,
      };
    } finally {
      await store.close();
    }
  } else {
    const store = await openStore(url, { env: ctx.env, clock: ctx.clock });
    try {
      report = {
        store: store.location,
        kind: kindOf(store),
        encrypted: false,
        keyring: null,
        connectors: (await store.list()).length,
        ...(store instanceof FileStore ? { directory: store.dir } : {}),
      };
    } finally {
      await store.close();
    }
  }

  if (values.json) writeJson(ctx, { ...report, warnings });
  else {
    writeLine(ctx.stdout, `Store:      ${report.store}`);
    writeLine(ctx.stdout, `Kind:       ${KIND_LABEL[report.kind]}`);
    const sealing =
      report.kind === "file"
        ? "no (private files, mode 0600)"
        : report.encrypted
          ? "yes"
          : "NO (encrypt=false)";
    writeLine(ctx.stdout, `Sealed:     ${sealing}`);
    if (report.keyring) {
      const previous =
        report.keyring.previous.length > 0 ? ` (previous: ${report.keyring.previous.join(", ")})` : "";
      writeLine(ctx.stdout, `Key:        ${report.keyring.current}${previous}`);
    }
    writeLine(ctx.stdout, `Connectors: ${report.connectors}`);
  }
  for (const w of warnings) writeLine(ctx.stderr, `WARNING: ${w}`);
  return EXIT.ok;
}

// ---- rotate-key -----------------------------------------------------------------------------

interface RotateOptions extends CommonOptions {
  add?: boolean | undefined;
  promote?: string | undefined;
  retire?: string | undefined;
}

interface RotateReport {
  ok: true;
  store: string;
  step: "add" | "promote" | "reseal" | "retire";
  keyFile: string | null;
  keyring: { current: string; previous: string[] };
  /** --add: the new key's id. */
  added?: string;
  /** --retire: the removed key's id. */
  retired?: string;
  /** Records re-sealed under the current key, and records that already were. */
  resealed: number;
  unchanged: number;
  connectors: { resealed: string[]; unchanged: string[] };
}

async function rotateKey(values: RotateOptions, ctx: CliContext): Promise<number> {
  const url = storeUrlOf(values, ctx);
  if (!isNetworkUrl(url)) {
    throw new ConfigError(
      "rotate-key is for Redis and PostgreSQL stores (the file store is not sealed): give --store or set TOKENKEEPER_STORE",
    );
  }
  if (!sealingRequested(url))
    throw new ConfigError("the store URL says encrypt=false: there is no key to rotate");
  const env = keyEnv(values, ctx);
  const ring = await loadKeyring(env);
  if (!ring) {
    throw new StoreKeyError(
      "no key is configured: set TOKENKEEPER_KEY_FILE or pass --key-file (`tokenkeeper store init` creates one)",
    );
  }
  const keyFile = editableKeyFile(env);
  const step: RotateReport["step"] = values.add
    ? "add"
    : values.promote
      ? "promote"
      : values.retire
        ? "retire"
        : "reseal";
  if (step !== "reseal" && !keyFile) {
    throw new ConfigError(
      `rotate-key --${step} edits a key file, but the keys come from TOKENKEEPER_KEY: ` +
        "put them in a file (mode 0600) and set TOKENKEEPER_KEY_FILE or pass --key-file",
    );
  }

  const store = await openStore(url, { env, clock: ctx.clock, keyring: ring });
  let report: RotateReport;
  try {
    if (!isNetworkStore(store)) throw new ConfigError(`${store.location} is not a network store`);
    const base = { ok: true as const, store: store.location, step, keyFile };
    const counts = (r: RotationReport | null) => ({
      resealed: r?.resealed.length ?? 0,
      unchanged: r?.unchanged.length ?? 0,
      connectors: { resealed: r?.resealed ?? [], unchanged: r?.unchanged ?? [] },
    });
    switch (step) {
      case "add": {
        // Step 1: readable everywhere before anything is sealed under it. No record changes.
        const added = generateKey();
        const next = new Keyring(ring.current, [...ring.previous, added]);
        await replaceKeyFile(keyFile!, next);
        report = { ...base, keyring: ringJson(next)!, added: added.id, ...counts(null) };
        break;
      }
      case "promote": {
        const key = ring.find(values.promote!.trim());
        if (!key) {
          throw new ConfigError(
            `key ${values.promote} is not in ${keyFile} (it holds ${ring.ids.join(", ")}); add it first with --add`,
          );
        }
        const next = ring.rotatedTo(key);
        // Re-seal first, then edit the file: if the store fails midway, the key file is as it was
        // and running the same command again finishes the job.
        const rotation = await store.rotateKey(next);
        await replaceKeyFile(keyFile!, next);
        report = { ...base, keyring: ringJson(next)!, ...counts(rotation) };
        break;
      }
      case "reseal": {
        const rotation = await store.rotateKey(ring);
        report = { ...base, keyring: ringJson(ring)!, ...counts(rotation) };
        break;
      }
      case "retire": {
        const id = values.retire!.trim();
        if (!ring.find(id))
          throw new ConfigError(`key ${id} is not in ${keyFile} (it holds ${ring.ids.join(", ")})`);
        // Refuses the current key before anything is touched.
        const next = ring.without(id);
        // Nothing may stay sealed under the key we drop: re-seal everything under the current key first.
        const rotation = await store.rotateKey(ring);
        await replaceKeyFile(keyFile!, next);
        report = { ...base, keyring: ringJson(next)!, retired: id, ...counts(rotation) };
        break;
      }
    }
  } finally {
    await store.close();
  }

  if (values.json) {
    writeJson(ctx, report);
    return EXIT.ok;
  }
  const file = report.keyFile ?? "TOKENKEEPER_KEY";
  switch (report.step) {
    case "add":
      writeLine(
        ctx.stdout,
        `Added key ${report.added} to ${file} as a previous key (readable, not yet used for writing).`,
      );
      writeLine(
        ctx.stdout,
        `Next: copy ${file} to every machine that uses ${report.store}, then on one of them run`,
      );
      writeLine(ctx.stdout, `  tokenkeeper store rotate-key --promote ${report.added}`);
      break;
    case "promote":
      writeLine(ctx.stdout, `Key ${report.keyring.current} is now current in ${file}.`);
      writeLine(ctx.stdout, resealLine(report));
      writeLine(
        ctx.stdout,
        `Next: copy ${file} to every machine, then run \`tokenkeeper store rotate-key\` once more,`,
      );
      writeLine(
        ctx.stdout,
        `and \`tokenkeeper store rotate-key --retire ${report.keyring.previous[0] ?? "<old-key-id>"}\` to drop the old key.`,
      );
      break;
    case "reseal":
      writeLine(ctx.stdout, resealLine(report));
      break;
    case "retire":
      writeLine(ctx.stdout, resealLine(report));
      writeLine(
        ctx.stdout,
        `Removed key ${report.retired} from ${file}. Remove it from the other machines' key files too.`,
      );
      break;
  }
  return EXIT.ok;
}

function resealLine(report: RotateReport): string {
  const n = report.resealed + report.unchanged;
  return (
    `Re-sealed ${report.resealed} of ${n} connector(s) under key ${report.keyring.current}` +
    ` (${report.unchanged} already were) in ${report.store}.`
  );
}

// ---- migrate --------------------------------------------------------------------------------

async function migrate(
  from: string,
  to: string,
  names: string[],
  values: CommonOptions,
  ctx: CliContext,
): Promise<number> {
  const env = keyEnv(values, ctx);
  const source = await openStore(from, { env, clock: ctx.clock });
  let result: MigrateStoreReport;
  let target: Store | null = null;
  try {
    target = await openStore(to, { env, clock: ctx.clock });
    if (source.location === target.location)
      throw new ConfigError(`--from and --to are the same store (${source.location})`);
    result = await migrateStore(source, target, names.length > 0 ? { names } : {});
  } finally {
    await source.close();
    await target?.close();
  }
  const report = {
    ok: true,
    from: source.location,
    to: target.location,
    copied: result.copied,
    passes: result.passes,
  };
  if (values.json) {
    writeJson(ctx, report);
    return EXIT.ok;
  }
  const passes =
    result.passes === 1
      ? "1 pass"
      : `${result.passes} passes: refreshes landed meanwhile and were copied again`;
  writeLine(
    ctx.stdout,
    `Copied ${result.copied.length} connector(s) from ${report.from} to ${report.to} (${passes}):`,
  );
  for (const c of result.copied) writeLine(ctx.stdout, `  ${c.name} (source version ${c.version})`);
  writeLine(
    ctx.stdout,
    "Both stores now hold these connectors. Switch every machine to the new store before the next",
  );
  writeLine(
    ctx.stdout,
    "refresh: a refresh through the old store would rotate the token the new store holds.",
  );
  return EXIT.ok;
}

/** Quotes a path for a copy-pasteable shell line. */
function shellQuote(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}
