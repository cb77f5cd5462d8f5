/**
 * Secrets are a type, not a habit: a Secret prints as "[redacted]" through toString, JSON,
 * template strings and util.inspect. Only code that sends a credential calls reveal().
 */
const inspectSymbol = Symbol.for("nodejs.util.inspect.custom");
const REDACTED = "[redacted]";

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    if (typeof value !== "string" || value.length === 0)
      throw new TypeError("a secret must be a non-empty string");
    this.#value = value;
  }

  /** The raw value. Call only where the credential is put on the wire or into the store. */
  reveal(): string {
    return this.#value;
  }

  /** A safe description for diagnostics: the length only, never any characters of the value. */
  describe(): string {
    return `[redacted ${this.#value.length} chars]`;
  }

  equals(other: Secret | undefined | null): boolean {
    return other instanceof Secret && other.#value === this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspectSymbol](): string {
    return REDACTED;
  }
}

export function secretOrUndefined(value: string | undefined | null): Secret | undefined {
  return typeof value === "string" && value.length > 0 ? new Secret(value) : undefined;
}

const SENSITIVE_KEYS =
  /^(access_token|refresh_token|id_token|code|code_verifier|client_secret|device_code|registration_access_token|authorization|password|token|secret|assertion)$/i;

/**
 * Deep-copies a plain value, replacing every sensitive-looking field and every Secret with "[redacted]".
 * Used on anything that came from a server before it reaches an error, event or log.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (value instanceof Secret) return REDACTED;
  if (depth > 8) return "[…]";
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SENSITIVE_KEYS.test(k) && v != null ? REDACTED : redact(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** Removes anything that looks like a bearer token or JWT from free text (server error descriptions, URLs). */
export function scrubText(text: string, maxLength = 500): string {
  const scrubbed = text
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, REDACTED)
    // An Authorization credential: the scheme as a word of its own, in the spellings seen in
    // headers (not the lower-case "basic" of a scope such as "mcp:basic mcp:write"), followed by a credential-sized b64token that is not a
    // challenge parameter (`Bearer realm="…"`).
    .replace(
      /(?<![\w:./~+-])(Bearer|bearer|BEARER|Basic|BASIC|DPoP|DPOP|dpop)\s+[A-Za-z0-9\-._~+/]{6,}=*(?![A-Za-z0-9\-._~+/="])/g,
      `$1 ${REDACTED}`,
    )
    .replace(
      /([?&#](?:code|access_token|refresh_token|id_token|client_secret|code_verifier|state)=)[^&#\s]*/gi,
      `$1${REDACTED}`,
    );
  return scrubbed.length > maxLength ? `${scrubbed.slice(0, maxLength)}…` : scrubbed;
}

/**
 * application/x-www-form-urlencoded (URL Standard §5.2) of one value: how a credential goes into
 * a form body or a Basic header (oauth/client-auth.ts), so also a spelling scrubServerText removes.
 */
export function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * Control characters (C0, DEL, C1) and the Unicode format characters that reorder or hide text
 * (bidi overrides and isolates, zero-width characters, line/paragraph separators): server text
 * must not rewrite a terminal line, forge a log line or a second JSON field, or hide a value.
 */
const CONTROL_CHARS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;
/** Values shorter than this are not scrubbed from text: they are no secret, and would mangle it. */
const MIN_SCRUBBED_LENGTH = 4;

/**
 * Text a server chose (error, error_description, a challenge's parameters), made safe to store,
 * log and show: every exact value in `sent` — the credentials of the request it answers — and
 * its percent-encoded spellings are replaced, control characters removed (tab, CR and LF become
 * spaces), known token shapes scrubbed, and the result capped at `maxLength`.
 *
 * Pattern scrubbing alone cannot work: an opaque refresh token looks like any word. The request
 * function knows exactly what it sent, so it passes those values here, at the boundary where
 * the response is parsed, before anything is stored or shown.
 */
export function scrubServerText(text: string, sent: Iterable<string>, maxLength = 300): string {
  // Controls removed first, so a secret split by them is whole again when it is looked for.
  let out = text.replace(/[\t\r\n]+/g, " ").replace(CONTROL_CHARS, "");
  const spellings = new Set<string>();
  for (const value of sent) {
    if (typeof value !== "string" || value.length < MIN_SCRUBBED_LENGTH) continue;
    spellings.add(value);
    spellings.add(encodeURIComponent(value));
    spellings.add(formEncode(value));
  }
  // Longest first: a value that contains another is replaced whole.
  for (const s of [...spellings].sort((a, b) => b.length - a.length)) {
    if (s.length >= MIN_SCRUBBED_LENGTH) out = out.split(s).join(REDACTED);
  }
  return scrubText(out, maxLength);
}
