/**
 * The one parser for store URLs. Everything that needs to know what a store URL says (which
 * kind of store, whether records are sealed, Tokenkeeper's own query parameters) asks here, so
 * the store that is opened, the keyring that is loaded and what `store info` reports cannot
 * disagree: `?encrypt=%66alse` means exactly what `?encrypt=false` means (the query is decoded
 * once, by the WHATWG URL parser), everywhere.
 *
 *   file:///path/to/dir                 file store
 *   redis://[user:pass@]host:port/db    Redis (rediss:// for TLS; ?prefix=…)
 *   postgres://user:pass@host:port/db   PostgreSQL (postgresql:// too; ?schema=…)
 *
 * Errors never echo the URL: it may hold a password.
 */
import { fileURLToPath } from "node:url";
import { ConfigError } from "../core/errors.js";

export type StoreKind = "file" | "redis" | "postgres";
export type NetworkStoreKind = Exclude<StoreKind, "file">;

export interface StoreUrlSpec {
  /** "Redis", "PostgreSQL": for messages. */
  label: string;
  /** Accepted protocols, with the colon: `["redis:", "rediss:"]`. */
  protocols: readonly string[];
  /** An example for the "not a valid URL" message. */
  example: string;
  /** Tokenkeeper's own query parameters besides `encrypt` (taken out before the driver sees the URL). */
  params: readonly string[];
}

export const STORE_URL_SPECS: Record<NetworkStoreKind, StoreUrlSpec> = {
  redis: {
    label: "Redis",
    protocols: ["redis:", "rediss:"],
    example: "redis://host:port/db",
    params: ["prefix"],
  },
  postgres: {
    label: "PostgreSQL",
    protocols: ["postgres:", "postgresql:"],
    example: "postgres://user@host:port/db",
    params: ["schema"],
  },
};

export interface FileStoreUrl {
  kind: "file";
  dir: string;
}

export interface NetworkStoreUrl {
  kind: NetworkStoreKind;
  /** What the driver gets: the URL without Tokenkeeper's own parameters. */
  driverUrl: URL;
  /** Tokenkeeper's own parameters by name (null when absent): `prefix` or `schema`. */
  params: Record<string, string | null>;
  /** The `encrypt=` parameter: null when absent (the store then seals). */
  encrypt: boolean | null;
  /** Whether records are sealed at rest: true unless the URL says `encrypt=false`. */
  sealed: boolean;
}

export type StoreUrl = FileStoreUrl | NetworkStoreUrl;

const KIND_BY_SCHEME: Record<string, StoreKind> = {
  file: "file",
  redis: "redis",
  rediss: "redis",
  postgres: "postgres",
  postgresql: "postgres",
};

/** The kind of store a URL names, from its scheme alone; null for an unknown scheme. */
export function storeKindOf(text: string): StoreKind | null {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text.trim())?.[1]?.toLowerCase();
  return (scheme && KIND_BY_SCHEME[scheme]) || null;
}

/** Parses a store URL, completely: kind, directory or driver URL, parameters, sealing. */
export function parseStoreUrl(text: string): StoreUrl {
  const trimmed = text.trim();
  const kind = storeKindOf(trimmed);
  if (kind === "file") {
    try {
      return { kind, dir: fileURLToPath(trimmed) };
    } catch {
      throw new ConfigError("a file store URL is file:///absolute/path");
    }
  }
  if (kind === null) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(trimmed)?.[1]?.toLowerCase();
    throw new ConfigError(
      `unknown store URL scheme${scheme ? ` "${scheme}:"` : ""}: use file:///dir, redis://host:port/db, rediss://…, ` +
        "postgres://user@host/db or postgresql://…",
    );
  }
  return parseNetworkStoreUrl(trimmed, kind);
}

/** Parses a Redis or PostgreSQL store URL; ConfigError for any other kind. */
export function parseNetworkStoreUrl(text: string, kind: NetworkStoreKind): NetworkStoreUrl {
  const spec = STORE_URL_SPECS[kind];
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`the ${spec.label} store URL is not a valid URL (expected ${spec.example})`);
  }
  if (!spec.protocols.includes(url.protocol)) {
    const accepted = spec.protocols.map((p) => `${p}//`).join(" or ");
    throw new ConfigError(`a ${spec.label} store URL starts with ${accepted}, not ${url.protocol}//`);
  }
  const params: Record<string, string | null> = {};
  for (const name of spec.params) params[name] = url.searchParams.get(name);
  const encryptText = url.searchParams.get("encrypt");
  if (encryptText !== null && encryptText !== "true" && encryptText !== "false") {
    throw new ConfigError(
      `store URL parameter encrypt must be true or false, not "${encryptText.slice(0, 20)}"`,
    );
  }
  for (const name of [...spec.params, "encrypt"]) url.searchParams.delete(name);
  const encrypt = encryptText === null ? null : encryptText === "true";
  return { kind, driverUrl: url, params, encrypt, sealed: encrypt !== false };
}

/** The user-info part of a redacted URL: `user:***@`, `user@` or nothing. Never the password. */
export function redactedUserInfo(url: URL): string {
  const user = url.username;
  return url.password ? `${user}:***@` : user ? `${user}@` : "";
}
