/**
 * A parser for the WWW-Authenticate header (RFC 9110 §11.6.1) and the Bearer challenge
 * parameters MCP relies on: `resource_metadata` (RFC 9728 §5.1), `scope` and `error`
 * (RFC 6750 §3). Pure: no I/O, never throws on hostile input, bounded work.
 */

export interface Challenge {
  /** The auth scheme, lower-cased (schemes are case-insensitive, RFC 9110 §11.1). */
  scheme: string;
  /** Parameters by lower-cased name; the first occurrence wins. */
  params: Record<string, string>;
  token68?: string;
}

const MAX_HEADER = 8192;
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
/** A token68 that stands alone before a comma or the end (RFC 9110 §11.2). */
const LONE_TOKEN68 = /^([A-Za-z0-9\-._~+/]+=*)[ \t]*(?:,|$)/;

/**
 * Splits a header into challenges. RFC 9110 lets commas separate both challenges and their
 * parameters, so a name followed by "=" is a parameter of the current challenge and any other
 * token starts a new challenge.
 */
export function parseWwwAuthenticate(header: string | null | undefined): Challenge[] {
  if (!header) return [];
  const s = header.length > MAX_HEADER ? header.slice(0, MAX_HEADER) : header;
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const skipWs = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\t")) i++;
  };
  const readToken = () => {
    const start = i;
    while (i < s.length && TCHAR.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  const readQuoted = () => {
    // RFC 9110 §5.6.4: quoted-string with backslash escapes.
    i++;
    let value = "";
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) i++;
      value += s[i];
      i++;
    }
    i++;
    return value;
  };
  while (i < s.length) {
    skipWs();
    if (s[i] === ",") {
      i++;
      continue;
    }
    const name = readToken();
    if (!name) {
      // Not a token: skip to the next comma and carry on (robust against garbage).
      while (i < s.length && s[i] !== ",") i++;
      continue;
    }
    skipWs();
    if (s[i] === "=") {
      i++;
      skipWs();
      const value = s[i] === '"' ? readQuoted() : readToken();
      const key = name.toLowerCase();
      if (current && !(key in current.params)) current.params[key] = value;
      continue;
    }
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
    const lone = LONE_TOKEN68.exec(s.slice(i));
    if (lone) {
      current.token68 = lone[1]!;
      i += lone[1]!.length;
    }
  }
  return out;
}

/** The Bearer challenge parameters MCP uses. */
export interface BearerChallenge {
  realm?: string;
  /** RFC 9728 §5.1: where the protected-resource metadata lives. */
  resourceMetadata?: string;
  /** RFC 6750 §3: the scope required to access the resource. */
  scope?: string;
  /** RFC 6750 §3.1: invalid_request, invalid_token or insufficient_scope. */
  error?: string;
  errorDescription?: string;
}

/** The first Bearer challenge in the header, or undefined when there is none. */
export function parseBearerChallenge(header: string | null | undefined): BearerChallenge | undefined {
  const challenge = parseWwwAuthenticate(header).find((c) => c.scheme === "bearer");
  if (!challenge) return undefined;
  const p = challenge.params;
  const out: BearerChallenge = {};
  if (p.realm !== undefined) out.realm = p.realm;
  if (p.resource_metadata) out.resourceMetadata = p.resource_metadata;
  if (p.scope !== undefined && p.scope.trim() !== "") out.scope = p.scope.trim().replace(/\s+/g, " ");
  if (p.error) out.error = p.error;
  if (p.error_description !== undefined) out.errorDescription = p.error_description;
  return out;
}

export interface InsufficientScope {
  error: "insufficient_scope";
  /** The scope the resource server says the request needs (RFC 6750 §3), when it said. */
  requiredScope?: string;
  description?: string;
  resourceMetadata?: string;
}

/**
 * Step-up detection (MCP authorization, "Scope Challenge Handling"; RFC 6750 §3.1): a 403
 * whose Bearer challenge says `insufficient_scope`. Returns what the caller needs to build a
 * `reauth_required` result naming the scope; undefined for any other response.
 */
export function parseInsufficientScope(response: {
  status: number;
  headers: { get(name: string): string | null };
}): InsufficientScope | undefined {
  if (response.status !== 403) return undefined;
  const bearer = parseBearerChallenge(response.headers.get("www-authenticate"));
  if (bearer?.error !== "insufficient_scope") return undefined;
  const out: InsufficientScope = { error: "insufficient_scope" };
  if (bearer.scope !== undefined) out.requiredScope = bearer.scope;
  if (bearer.errorDescription !== undefined) out.description = bearer.errorDescription;
  if (bearer.resourceMetadata !== undefined) out.resourceMetadata = bearer.resourceMetadata;
  return out;
}

/** Scope strings as sets: the union keeps the first spelling and order (RFC 6749 §3.3: space-delimited). */
export function mergeScopes(...scopes: (string | undefined)[]): string | undefined {
  const seen = new Set<string>();
  for (const s of scopes) for (const part of (s ?? "").split(/\s+/)) if (part) seen.add(part);
  return seen.size > 0 ? [...seen].join(" ") : undefined;
}
