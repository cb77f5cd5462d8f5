/**
 * Encryption at rest for network stores. A Redis or PostgreSQL server is shared by a team and
 * backed up, replicated and read by its operators; the refresh tokens in it are long-lived
 * credentials. So a network store never writes a record in the clear unless told to.
 *
 * Envelope: `tk2.<keyId>.<iv>.<ciphertext+tag>` (base64url parts), AES-256-GCM with a random
 * 96-bit IV per write (NIST SP 800-38D §8.2.2: random IVs are safe well below 2^32 messages per
 * key). The additional authenticated data binds the connector name, the key id and the record's
 * version, so a sealed blob copied onto another connector's entry fails to open, the key id in
 * the header cannot be swapped, and a store writer without the key cannot roll a connector back
 * by putting an older blob of the same connector in place of the current one (an older refresh
 * token, already spent: refreshing with it would make the server revoke the whole grant).
 *
 * The version is the one the store assigns at put: both network stores number a connector's
 * writes 1, 2, 3 … (a compare-and-set at version N writes N + 1; creating writes 1), so the
 * writer knows it before sending and seals for it. Restoring a blob together with its old version
 * number is still possible for someone who can write the store: it reverts the whole connector,
 * like restoring a backup, and is named in docs/security.md.
 *
 * Records written before the version was bound (`tk1`, AAD without the version) are still read,
 * and every write seals `tk2`. Until a key rotation retires the key they were sealed with, an
 * old `tk1` blob can still be replayed; `tokenkeeper store rotate-key` re-seals every record as
 * `tk2` under the new key, and removing the old key then closes that window.
 *
 * Keys: `TOKENKEEPER_KEY` (one or more keys, comma or whitespace separated) or
 * `TOKENKEEPER_KEY_FILE` (one key a line, `#` comments; mode 0600 or stricter). The first key is
 * the current one, used for every write; the others are previous keys, kept only to read records
 * not yet re-sealed. A key is 32 bytes, as base64 or 64 hex digits; its id is the first 8 hex
 * digits of its SHA-256, safe to print.
 *
 * Rotation, with several machines sharing the store:
 *   1. add the new key as a *previous* key everywhere (every machine can now read it);
 *   2. on one machine, make it current and run `rotate-key` (re-seals every record by CAS);
 *   3. make it current everywhere; run `rotate-key` once more to catch records a machine still
 *      on the old current key wrote meanwhile; then remove the old key.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import {
  ConfigError,
  ConflictError,
  StoreCorruptError,
  StoreKeyError,
  StorePermissionError,
} from "../core/errors.js";
import { type ConnectorRecord, decodeRecord, encodeRecord } from "../core/record.js";
import { Secret } from "../core/secret.js";

const inspectSymbol = Symbol.for("nodejs.util.inspect.custom");
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Written by every seal: name, key id and record version authenticated. */
const ENVELOPE_VERSION = "tk2";
/** Read only: name and key id authenticated, not the version (records from before tk2). */
const LEGACY_ENVELOPE = "tk1";
const ENVELOPE = /^(tk[12])\.([0-9a-f]{8})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$/;

// ---- keys ----------------------------------------------------------------------------------

/** Key bytes, reachable only from this module (the Sealer), never through a SealKey's properties. */
const keyBytes = new WeakMap<SealKey, Buffer>();

/** One 32-byte key. Prints as its id only; the bytes never reach a log or JSON. */
export class SealKey {
  readonly id: string;

  private constructor(bytes: Buffer) {
    keyBytes.set(this, bytes);
    this.id = createHash("sha256").update(bytes).digest("hex").slice(0, 8);
  }

  /** Parses base64, base64url or 64 hex digits. Throws ConfigError (without echoing the text). */
  static parse(text: string, what = "key"): SealKey {
    const bytes = decodeKeyText(text.trim());
    if (!bytes) {
      throw new ConfigError(
        `${what} is not a ${KEY_BYTES}-byte key (expected base64 or ${KEY_BYTES * 2} hex digits)`,
      );
    }
    return new SealKey(bytes);
  }

  static generate(): SealKey {
    return new SealKey(randomBytes(KEY_BYTES));
  }

  /** The key as base64 text, for a key file or an environment variable. */
  export(): Secret {
    return new Secret(keyBytes.get(this)!.toString("base64"));
  }

  toString(): string {
    return `SealKey(${this.id})`;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

function decodeKeyText(text: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return null;
  const bytes = Buffer.from(text.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  return bytes.length === KEY_BYTES ? bytes : null;
}

/** A new random key, for `tokenkeeper store init` and `tokenkeeper store rotate-key`. */
export function generateKey(): SealKey {
  return SealKey.generate();
}

/** The current key (used for every write) and previous keys (still accepted for reading). */
export class Keyring {
  readonly current: SealKey;
  readonly previous: readonly SealKey[];

  constructor(current: SealKey, previous: readonly SealKey[] = []) {
    this.current = current;
    const seen = new Set([current.id]);
    this.previous = previous.filter((k) => !seen.has(k.id) && seen.add(k.id));
  }

  /** Builds a keyring from key texts, the first being current. */
  static parse(texts: readonly string[], what = "key"): Keyring {
    if (texts.length === 0) throw new ConfigError(`${what}: no key given`);
    const keys = texts.map((t, i) => SealKey.parse(t, texts.length > 1 ? `${what} #${i + 1}` : what));
    return new Keyring(keys[0]!, keys.slice(1));
  }

  get ids(): string[] {
    return [this.current.id, ...this.previous.map((k) => k.id)];
  }

  find(id: string): SealKey | undefined {
    return this.current.id === id ? this.current : this.previous.find((k) => k.id === id);
  }

  /** `next` as current, with this ring's keys kept as previous (for reading during rotation). */
  rotatedTo(next: SealKey): Keyring {
    return new Keyring(next, [this.current, ...this.previous]);
  }

  /** This ring's current key, readable with every key of both rings. */
  including(other: Keyring): Keyring {
    return new Keyring(this.current, [...this.previous, other.current, ...other.previous]);
  }

  /** The ring without a retired key. Refuses to drop the current key. */
  without(id: string): Keyring {
    if (this.current.id === id)
      throw new ConfigError(`key ${id} is the current key; rotate to another key first`);
    return new Keyring(
      this.current,
      this.previous.filter((k) => k.id !== id),
    );
  }

  /** Text for a key file: the current key first. Reveals key material: write it with mode 0600. */
  toKeyFileText(): Secret {
    const lines = [
      "# Tokenkeeper store keys: the first is current, the others are previous keys (read only).",
      ...[this.current, ...this.previous].map((k) => `${k.export().reveal()}  # ${k.id}`),
    ];
    return new Secret(`${lines.join("\n")}\n`);
  }

  toString(): string {
    return `Keyring(${this.ids.join(", ")})`;
  }

  toJSON(): { current: string; previous: string[] } {
    return { current: this.current.id, previous: this.previous.map((k) => k.id) };
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

export interface LoadKeyringOptions {
  platform?: NodeJS.Platform;
}

/**
 * The keyring from `TOKENKEEPER_KEY` or `TOKENKEEPER_KEY_FILE`, or null when neither is set.
 * A key file readable by group or others is refused (StorePermissionError): it unlocks every
 * token in the shared store.
 */
export async function loadKeyring(
  env: Record<string, string | undefined> = process.env,
  options: LoadKeyringOptions = {},
): Promise<Keyring | null> {
  const inline = env.TOKENKEEPER_KEY?.trim();
  const file = env.TOKENKEEPER_KEY_FILE?.trim();
  if (inline && file) {
    throw new ConfigError("both TOKENKEEPER_KEY and TOKENKEEPER_KEY_FILE are set; set only one");
  }
  if (inline) return Keyring.parse(splitKeys(inline), "TOKENKEEPER_KEY");
  if (!file) return null;

  const platform = options.platform ?? process.platform;
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch (e) {
    throw new ConfigError(
      `TOKENKEEPER_KEY_FILE ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`,
      {
        file,
      },
    );
  }
  if (!info.isFile()) throw new ConfigError(`TOKENKEEPER_KEY_FILE ${file} is not a regular file`, { file });
  // POSIX modes only: on Windows, access is governed by ACLs that stat() does not report.
  if (platform !== "win32" && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    throw new StorePermissionError(
      `key file ${file} is accessible by other users (mode ${mode}); run \`chmod 600 ${file}\``,
      { file, mode },
    );
  }
  const text = await readFile(file, "utf8");
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line.length > 0);
  if (keys.length === 0) throw new ConfigError(`key file ${file} holds no key`, { file });
  return Keyring.parse(keys, `key file ${file}`);
}

function splitKeys(text: string): string[] {
  return text.split(/[\s,]+/).filter((k) => k.length > 0);
}

// ---- the envelope --------------------------------------------------------------------------

function aad(envelope: string, name: string, keyId: string, version: number): Buffer {
  const text =
    envelope === LEGACY_ENVELOPE ? `tk1\0${name}\0${keyId}` : `${envelope}\0${name}\0${keyId}\0${version}`;
  return Buffer.from(text, "utf8");
}

/** The key id a sealed value names, or null when the text is not an envelope. */
export function sealedKeyId(sealed: string): string | null {
  return ENVELOPE.exec(sealed)?.[2] ?? null;
}

/** True for a blob in the current envelope (version-bound); false for a legacy one or plain text. */
export function isCurrentEnvelope(sealed: string): boolean {
  return sealed.startsWith(`${ENVELOPE_VERSION}.`);
}

export function isSealed(text: string): boolean {
  return text.startsWith(`${ENVELOPE_VERSION}.`) || text.startsWith(`${LEGACY_ENVELOPE}.`);
}

/**
 * The version a store assigns to a compare-and-set write at `expectedVersion` (null: create).
 * Both network stores number writes this way; the seal must be made for it before sending.
 */
export function nextVersion(expectedVersion: number | null): number {
  return expectedVersion === null ? 1 : expectedVersion + 1;
}

export class Sealer {
  readonly keyring: Keyring;
  /** Names the store in error messages (a redacted location). */
  readonly where: string;

  constructor(keyring: Keyring, options: { where?: string } = {}) {
    this.keyring = keyring;
    this.where = options.where ?? "the store";
  }

  /** Seals `plaintext` for connector `name` at record `version` under the current key. */
  seal(name: string, version: number, plaintext: string): string {
    const key = this.keyring.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", keyBytes.get(key)!, iv);
    cipher.setAAD(aad(ENVELOPE_VERSION, name, key.id, version));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return `${ENVELOPE_VERSION}.${key.id}.${iv.toString("base64url")}.${body.toString("base64url")}`;
  }

  /**
   * Opens a value sealed for connector `name` stored at `version`. StoreKeyError when its key is
   * not in the keyring; StoreCorruptError when it is malformed or fails authentication (altered,
   * copied from another connector's entry, or an older version of this one put back).
   */
  open(name: string, version: number, sealed: string): string {
    const match = ENVELOPE.exec(sealed);
    if (!match) {
      throw new StoreCorruptError(`connector "${name}" in ${this.where} is not a valid sealed record`, {
        connector: name,
        store: this.where,
      });
    }
    const [, envelope, keyId, ivText, bodyText] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    const key = this.keyring.find(keyId);
    if (!key) {
      throw new StoreKeyError(
        `connector "${name}" in ${this.where} is sealed with key ${keyId}, which is not in the keyring ` +
          `(${this.keyring.ids.join(", ")}); add that key to TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE as a previous key`,
        { connector: name, store: this.where, keyId, keyring: this.keyring.ids },
      );
    }
    const body = Buffer.from(bodyText, "base64url");
    if (body.length < TAG_BYTES) {
      throw new StoreCorruptError(`connector "${name}" in ${this.where} is a truncated sealed record`, {
        connector: name,
        store: this.where,
      });
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", keyBytes.get(key)!, Buffer.from(ivText, "base64url"));
      decipher.setAAD(aad(envelope, name, keyId, version));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(body.subarray(0, body.length - TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      throw new StoreCorruptError(
        `connector "${name}" in ${this.where} fails authentication under key ${keyId}: ` +
          `the record was altered, copied from another connector's entry, or is an older version put back in place of version ${version} (a rollback)`,
        { connector: name, store: this.where, keyId, version },
      );
    }
  }
}

// ---- records in a network store -------------------------------------------------------------

/**
 * Turns records into the text a network store persists: sealed when the store has a Sealer,
 * plain JSON only when the store was explicitly opened with `encrypt: false`. A store never
 * reads the other kind silently: a sealed record in a plaintext store, or a plaintext record in
 * a sealing store, is a StoreKeyError telling how to fix the configuration.
 */
export class RecordCodec {
  readonly sealer: Sealer | null;
  readonly where: string;

  constructor(sealer: Sealer | null, where: string) {
    this.sealer = sealer;
    this.where = where;
  }

  /** The stored text of `record` written as `version` (see nextVersion). */
  encode(name: string, version: number, record: ConnectorRecord): string {
    const text = encodeRecord(record);
    return this.sealer ? this.sealer.seal(name, version, text) : text;
  }

  /** The record from the text stored at `version`. */
  decode(name: string, version: number, text: string): ConnectorRecord {
    const where = `${this.where} (connector "${name}")`;
    if (isSealed(text)) {
      if (!this.sealer) {
        const keyId = sealedKeyId(text) ?? "unknown";
        throw new StoreKeyError(
          `connector "${name}" in ${this.where} is sealed with key ${keyId}, but the store was opened with ` +
            "encryption off; set TOKENKEEPER_KEY or TOKENKEEPER_KEY_FILE and drop encrypt=false",
          { connector: name, store: this.where, keyId },
        );
      }
      return decodeRecord(this.sealer.open(name, version, text), where);
    }
    if (this.sealer) {
      throw new StoreKeyError(
        `connector "${name}" in ${this.where} is stored unsealed, but this store seals records at rest; ` +
          "open it with encrypt=false, or copy it into a sealing store with `tokenkeeper store migrate`",
        { connector: name, store: this.where },
      );
    }
    return decodeRecord(text, where);
  }
}

/** Raw access to a network store's persisted text, for re-sealing. */
export interface RawRecordAccess {
  list(): Promise<string[]>;
  getRaw(name: string): Promise<{ text: string; version: number } | null>;
  /** Compare-and-set of the raw text; throws ConflictError when the version moved. */
  putRaw(name: string, text: string, expectedVersion: number): Promise<number>;
}

export interface RotationReport {
  /** The key every record is now sealed under. */
  keyId: string;
  resealed: string[];
  /** Already sealed under the current key. */
  unchanged: string[];
}

/**
 * Re-seals every record under `next.current`. Each write is a compare-and-set: when a refresh
 * (or another rotation) wrote the record meanwhile, we re-read and try again, so the newer token
 * set is re-sealed rather than overwritten with the one we read.
 */
export async function resealAll(
  raw: RawRecordAccess,
  current: Keyring,
  next: Keyring,
  options: { where: string; maxAttempts?: number },
): Promise<RotationReport> {
  const sealer = new Sealer(next.including(current), { where: options.where });
  const maxAttempts = options.maxAttempts ?? 10;
  const report: RotationReport = { keyId: next.current.id, resealed: [], unchanged: [] };
  for (const name of await raw.list()) {
    for (let attempt = 1; ; attempt++) {
      const stored = await raw.getRaw(name);
      if (!stored) break;
      // A legacy (tk1) blob is re-sealed even under the current key: it upgrades to the
      // version-bound envelope.
      if (sealedKeyId(stored.text) === next.current.id && isCurrentEnvelope(stored.text)) {
        report.unchanged.push(name);
        break;
      }
      if (!isSealed(stored.text)) {
        throw new StoreKeyError(
          `connector "${name}" in ${options.where} is stored unsealed; rotation only re-seals sealed records`,
          { connector: name, store: options.where },
        );
      }
      const resealed = sealer.seal(
        name,
        nextVersion(stored.version),
        sealer.open(name, stored.version, stored.text),
      );
      try {
        await raw.putRaw(name, resealed, stored.version);
        report.resealed.push(name);
        break;
      } catch (e) {
        if (!(e instanceof ConflictError) || attempt >= maxAttempts) throw e;
      }
    }
  }
  return report;
}
