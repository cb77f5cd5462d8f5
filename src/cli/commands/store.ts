/**
 * `tokenkeeper store init | info | rotate-key | migrate`: parses the command line, calls the
 * store layer (src/store/store-admin.ts, usable from the library) and prints its report.
 * Key material is never printed.
 */
import { resolve } from "node:path";
import { EXIT } from "../../core/errors.js";
import {
  copyStore,
  describeStore,
  type InitReport,
  initStore,
  type RotateReport,
  type RotationStep,
  rotateStoreKey,
} from "../../store/store-admin.js";
import type { StoreKind } from "../../store/store-url.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import type { CliContext } from "../context.js";
import { writeLine, writeWireJson } from "../output.js";

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

/** The environment keys are loaded from: --key-file, when given, wins over both variables. */
function keyEnv(values: CommonOptions, ctx: CliContext): NodeJS.ProcessEnv {
  if (!values["key-file"]) return ctx.env;
  const env: NodeJS.ProcessEnv = { ...ctx.env, TOKENKEEPER_KEY_FILE: resolve(values["key-file"]) };
  delete env.TOKENKEEPER_KEY;
  return env;
}

const KIND_LABEL: Record<StoreKind, string> = { file: "file store", redis: "Redis", postgres: "PostgreSQL" };

// ---- init -----------------------------------------------------------------------------------

async function init(values: CommonOptions, ctx: CliContext): Promise<number> {
  const env = keyEnv(values, ctx);
  const report = await initStore(values.store, { env, clock: ctx.clock });
  if (report.kind === "file" && values["key-file"]) {
    writeLine(
      ctx.stderr,
      "Note: the file store is protected by file permissions, not a key; --key-file is ignored.",
    );
  }
  if (values.json) {
    writeWireJson(ctx, report);
    return EXIT.ok;
  }
  if (report.kind === "file") {
    writeLine(
      ctx.stdout,
      `Store ${report.store} is ready (file store, directory ${report.directory}, mode 0700).`,
    );
    writeLine(ctx.stdout, `Connectors in the store: ${report.connectors}.`);
    return EXIT.ok;
  }
  printInit(report, env, ctx);
  return EXIT.ok;
}

function printInit(report: InitReport, env: NodeJS.ProcessEnv, ctx: CliContext): void {
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
}

// ---- info -----------------------------------------------------------------------------------

async function info(values: CommonOptions, ctx: CliContext): Promise<number> {
  const report = await describeStore(values.store, { env: keyEnv(values, ctx), clock: ctx.clock });
  if (values.json) writeWireJson(ctx, report);
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
  for (const w of report.warnings) writeLine(ctx.stderr, `WARNING: ${w}`);
  return EXIT.ok;
}

// ---- rotate-key -----------------------------------------------------------------------------

interface RotateOptions extends CommonOptions {
  add?: boolean | undefined;
  promote?: string | undefined;
  retire?: string | undefined;
}

async function rotateKey(values: RotateOptions, ctx: CliContext): Promise<number> {
  const step: RotationStep = values.add
    ? { step: "add" }
    : values.promote
      ? { step: "promote", keyId: values.promote }
      : values.retire
        ? { step: "retire", keyId: values.retire }
        : { step: "reseal" };
  const report = await rotateStoreKey(values.store, step, { env: keyEnv(values, ctx), clock: ctx.clock });
  if (values.json) {
    writeWireJson(ctx, report);
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
  const report = await copyStore(from, to, names, { env: keyEnv(values, ctx), clock: ctx.clock });
  if (values.json) {
    writeWireJson(ctx, report);
    return EXIT.ok;
  }
  const passes =
    report.passes === 1
      ? "1 pass"
      : `${report.passes} passes: refreshes landed meanwhile and were copied again`;
  writeLine(
    ctx.stdout,
    `Copied ${report.copied.length} connector(s) from ${report.from} to ${report.to} (${passes}):`,
  );
  for (const c of report.copied) writeLine(ctx.stdout, `  ${c.name} (source version ${c.version})`);
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
