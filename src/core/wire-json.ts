/**
 * The one JSON dialect of everything Tokenkeeper prints or appends for machines (command
 * `--json` output, errors, the events file, skip records): snake_case keys, instants as
 * ISO-8601 UTC strings, durations as numbers with their unit in the key (`_ms`, `_seconds`).
 * In-memory objects (records, library events) stay camelCase with epoch ms; this converts them
 * at the edge, in one place, so no output can drift into a dialect of its own.
 */

import { isoTime } from "./duration.js";

/** camelCase → snake_case; an already snake_case key is unchanged. */
export function snakeKey(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Whether a key names an instant held as epoch ms: `at`, `since`, `*At`, `*_at`. Not RFC 7591's
 * `client_secret_expires_at`, which is epoch seconds and never printed.
 */
export function isInstantKey(key: string): boolean {
  return key === "at" || key === "since" || /[a-z]At$/.test(key) || key.endsWith("_at");
}

function iso(ms: number): string | number {
  // Only values a Date can hold are instants; anything else is left as the number it is.
  return isoTime(ms) ?? ms;
}

/** Converts a plain JSON-able value to the wire dialect (see the module comment). Pure. */
export function toWire(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => toWire(v));
  if (value === null || typeof value !== "object") return value;
  // Secrets and other objects with their own JSON form keep it (they print redacted).
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    out[snakeKey(key)] = typeof v === "number" && isInstantKey(key) ? iso(v) : toWire(v);
  }
  return out;
}
