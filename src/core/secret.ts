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
    .replace(/\b(Bearer|Basic|DPoP)\s+[\w\-.~+/]+=*/gi, `$1 ${REDACTED}`)
    .replace(
      /([?&#](?:code|access_token|refresh_token|id_token|client_secret|code_verifier|state)=)[^&#\s]*/gi,
      `$1${REDACTED}`,
    );
  return scrubbed.length > maxLength ? `${scrubbed.slice(0, maxLength)}…` : scrubbed;
}
