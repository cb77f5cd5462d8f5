/**
 * Discovery as the MCP authorization specification (2025-11-25) describes it:
 *
 * 1. call the MCP server without a token and read the 401's `WWW-Authenticate` Bearer
 *    challenge (`resource_metadata`, `scope`, `error`);
 * 2. fetch the protected-resource metadata (RFC 9728) from the challenge's URL, else from the
 *    well-known URIs: path-inserted `/.well-known/oauth-protected-resource/<path>`, then root;
 * 3. choose an authorization server from `authorization_servers` (RFC 9728 §7.6);
 * 4. fetch its metadata: RFC 8414 with path insertion, then OpenID Discovery with path
 *    insertion, then OpenID Discovery with the path appended (root issuers: RFC 8414, then
 *    OpenID), and check that the `issuer` it states is the one we asked for (RFC 8414 §3.3).
 *
 * Two fallbacks, both as the SDK's own client does:
 * - a server may let `initialize` through and protect only later requests (authorization starts
 *   from whichever request gets the 401/403): on a 2xx probe, the well-known RFC 9728 locations
 *   are tried, and only a server that publishes none there needs no login;
 * - a 2025-03-26 server publishes no protected-resource metadata: its own origin is then the
 *   authorization server (metadata at `<origin>/.well-known/oauth-authorization-server`, else the
 *   default endpoints `/authorize`, `/token`, `/register`), as that revision of the spec said.
 *
 * Every request goes through boundedFetch (timeout, size limit, no automatic redirects);
 * redirects are followed only within the same origin. Each step is exported on its own so
 * `doctor` can run them one by one and report each outcome; `discover()` chains them and
 * throws at the first problem, which is what login wants.
 */
import type { Clock } from "../core/clock.js";
import { ProtocolError, TransientError } from "../core/errors.js";
import { assertSecureUrl, boundedFetch, describeUrl, type FetchLike } from "./http.js";
import {
  type AuthorizationServerMetadata,
  authorizationServerMetadataSchema,
  type ProtectedResourceMetadata,
  protectedResourceMetadataSchema,
  readDocument,
} from "./metadata-schemas.js";
import { type BearerChallenge, parseBearerChallenge } from "./www-authenticate.js";

/** The MCP protocol revision whose authorization rules this module follows. */
export const MCP_PROTOCOL_VERSION = "2025-11-25";
const MAX_REDIRECTS = 3;

export interface DiscoveryDeps {
  clock: Clock;
  fetch?: FetchLike;
  /** Per-request timeout (boundedFetch's default when absent). */
  timeoutMs?: number;
  maxBytes?: number;
  signal?: AbortSignal;
}

/** One request made during discovery, for `doctor` and for error messages. */
export interface DiscoveryAttempt {
  url: string;
  what: string;
  status?: number;
  outcome: "ok" | "not_found" | "error" | "redirect";
  note?: string;
}

export type Trace = DiscoveryAttempt[];

/**
 * The canonical URI of an MCP server (MCP authorization, "Canonical Server URI"; RFC 8707 §2):
 * absolute, http(s), scheme and host lower-cased (URL parsing does that, and drops a default
 * port), no fragment. The path is kept as given; a bare origin is written without the "/".
 */
export function canonicalServerUri(input: string): string {
  let u: URL;
  try {
    u = new URL(input.trim());
  } catch {
    throw new ProtocolError(`"${input.slice(0, 200)}" is not an absolute URL`, {
      field: "mcp_url",
      problem: "invalid_url",
    });
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw new ProtocolError(`the MCP server URL must use https (got ${u.protocol})`, {
      field: "mcp_url",
      problem: "invalid_url",
    });
  }
  if (u.username || u.password) {
    throw new ProtocolError("the MCP server URL must not contain credentials", {
      field: "mcp_url",
      problem: "invalid_url",
    });
  }
  u.hash = "";
  const href = u.href;
  return u.pathname === "/" && !u.search ? href.slice(0, -1) : href;
}

/**
 * RFC 9728 §3.3 as the MCP specification applies it: the metadata's `resource` must name the
 * server we are talking to — the same origin, and a path that is the server URL's path or a
 * parent of it on a segment boundary (`/api` covers `/api/mcp`, not `/api2`).
 */
export function resourceCovers(resource: string, mcpUrl: string): boolean {
  let r: URL;
  let m: URL;
  try {
    r = new URL(resource);
    m = new URL(mcpUrl);
  } catch {
    return false;
  }
  if (r.origin !== m.origin || r.hash) return false;
  const rp = r.pathname.endsWith("/") ? r.pathname : `${r.pathname}/`;
  const mp = m.pathname.endsWith("/") ? m.pathname : `${m.pathname}/`;
  return mp.startsWith(rp);
}

/** RFC 8414 §3.3 ("MUST be identical"), tolerating only the "/" that URL parsing adds to a bare origin. */
export function issuerMatches(expected: string, actual: string): boolean {
  if (expected === actual) return true;
  try {
    const e = new URL(expected);
    const a = new URL(actual);
    return e.pathname === "/" && a.pathname === "/" && e.href === a.href && !e.search && !a.search;
  } catch {
    return false;
  }
}

function httpFor(deps: DiscoveryDeps): FetchLike {
  return boundedFetch({
    clock: deps.clock,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.timeoutMs !== undefined ? { timeoutMs: deps.timeoutMs } : {}),
    ...(deps.maxBytes !== undefined ? { maxBytes: deps.maxBytes } : {}),
  });
}

// ---- step 1: the unauthenticated call -------------------------------------------------------

export interface ProbeResult {
  url: string;
  status: number;
  /** The Bearer challenge of a 401/403, when there was one. */
  challenge?: BearerChallenge;
  /** Where a 3xx pointed (not followed). */
  location?: string;
}

/**
 * Calls the MCP endpoint the way a client starts a session (a JSON-RPC `initialize` POST,
 * Streamable HTTP transport) without a token. A protected server answers 401 with a Bearer
 * challenge (MCP authorization, "Authorization Server Discovery").
 */
export async function probeServer(mcpUrl: string, deps: DiscoveryDeps, trace?: Trace): Promise<ProbeResult> {
  assertSecureUrl(mcpUrl, "MCP server URL");
  const http = httpFor(deps);
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: {
      protocolVersion: MCP_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: "tokenkeeper", version: "0.1.0" },
    },
  });
  let response: Response;
  try {
    response = await http(mcpUrl, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    if (response.status === 405) {
      // The legacy HTTP+SSE transport (MCP 2024-11-05) opens its endpoint with a GET.
      trace?.push({
        url: describeUrl(mcpUrl),
        what: "MCP server",
        status: 405,
        outcome: "ok",
        note: "POST not allowed; trying GET",
      });
      response = await http(mcpUrl, {
        headers: { accept: "text/event-stream" },
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
    }
  } catch (error) {
    trace?.push({ url: describeUrl(mcpUrl), what: "MCP server", outcome: "error", note: errorNote(error) });
    throw error;
  }
  const result: ProbeResult = { url: mcpUrl, status: response.status };
  const challenge = parseBearerChallenge(response.headers.get("www-authenticate"));
  if (challenge) result.challenge = challenge;
  const location = response.headers.get("location");
  if (response.status >= 300 && response.status < 400 && location)
    result.location = safeResolve(location, mcpUrl);
  trace?.push({
    url: describeUrl(mcpUrl),
    what: "MCP server",
    status: response.status,
    outcome: response.status >= 300 && response.status < 400 ? "redirect" : "ok",
  });
  return result;
}

/** Turns a probe into the challenge discovery needs, or a clear error. */
export function requireChallenge(probe: ProbeResult): BearerChallenge {
  if (probe.status === 401) return probe.challenge ?? {};
  const where = describeUrl(probe.url);
  if (probe.status >= 200 && probe.status < 300) {
    throw new ProtocolError(
      `${where} answered ${probe.status} without a token and publishes no protected resource metadata: it does not require authorization, so there is nothing to log in to (an MCP client can use it directly, or through \`tokenkeeper proxy ${where} --no-auth\`)`,
      {
        server: where,
        status: probe.status,
        problem: "no_auth_required",
      },
    );
  }
  if (probe.status >= 300 && probe.status < 400) {
    throw new ProtocolError(
      `${where} redirects (${probe.status}) to ${probe.location ? describeUrl(probe.location) : "another URL"}; redirects are not followed: use the final MCP endpoint URL`,
      { server: where, status: probe.status, problem: "redirect" },
    );
  }
  if (probe.status >= 500 || probe.status === 429) {
    throw new TransientError(`${where} answered ${probe.status}; try again later`, {
      url: where,
      status: probe.status,
      kind: "http",
    });
  }
  throw new ProtocolError(`${where} answered ${probe.status} instead of 401 with a Bearer challenge`, {
    server: where,
    status: probe.status,
    problem: "no_challenge",
  });
}

// ---- document fetching ------------------------------------------------------------------------

interface FetchedDocument {
  url: string;
  status: number;
  response: Response;
}

/**
 * GETs a metadata document, following at most MAX_REDIRECTS redirects, each within the origin
 * of the URL asked for: a document must come from the server that is supposed to publish it.
 */
async function fetchDocument(
  start: string,
  what: string,
  deps: DiscoveryDeps,
  trace?: Trace,
): Promise<FetchedDocument> {
  const http = httpFor(deps);
  const origin = new URL(start).origin;
  let url = start;
  for (let hop = 0; ; hop++) {
    assertSecureUrl(url, what);
    let response: Response;
    try {
      response = await http(url, {
        headers: { accept: "application/json", "mcp-protocol-version": MCP_PROTOCOL_VERSION },
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
    } catch (error) {
      trace?.push({ url: describeUrl(url), what, outcome: "error", note: errorNote(error) });
      throw error;
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      const next = safeResolve(location, url);
      const sameOrigin = URL.canParse(next) && new URL(next).origin === origin;
      trace?.push({
        url: describeUrl(url),
        what,
        status: response.status,
        outcome: "redirect",
        note: `to ${describeUrl(next)}`,
      });
      if (!sameOrigin) {
        throw new ProtocolError(
          `${what} at ${describeUrl(url)} redirects to another origin (${describeUrl(next)}); discovery does not follow it`,
          {
            server: describeUrl(url),
            field: "location",
            problem: "cross_origin_redirect",
          },
        );
      }
      if (hop >= MAX_REDIRECTS) {
        throw new ProtocolError(
          `${what} at ${describeUrl(start)} redirects more than ${MAX_REDIRECTS} times`,
          {
            server: describeUrl(start),
            problem: "too_many_redirects",
          },
        );
      }
      url = next;
      continue;
    }
    trace?.push({
      url: describeUrl(url),
      what,
      status: response.status,
      outcome: response.ok
        ? "ok"
        : response.status === 404 || (response.status >= 400 && response.status < 500)
          ? "not_found"
          : "error",
    });
    return { url, status: response.status, response };
  }
}

function safeResolve(location: string, base: string): string {
  try {
    return new URL(location, base).href;
  } catch {
    return location;
  }
}

function errorNote(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function serverError(doc: FetchedDocument, what: string): TransientError {
  return new TransientError(`${what} at ${describeUrl(doc.url)} answered ${doc.status}; try again later`, {
    url: describeUrl(doc.url),
    status: doc.status,
    kind: "http",
  });
}

// ---- step 2: protected-resource metadata (RFC 9728) -------------------------------------------

/** The well-known locations of an MCP server's protected-resource metadata, in the order to try them. */
export function protectedResourceMetadataUrls(mcpUrl: string): string[] {
  const u = new URL(mcpUrl);
  const path = u.pathname.replace(/\/+$/, "");
  const urls: string[] = [];
  // RFC 9728 §3.1: the well-known segment goes between the host and the path.
  if (path) urls.push(`${u.origin}/.well-known/oauth-protected-resource${path}`);
  urls.push(`${u.origin}/.well-known/oauth-protected-resource`);
  return urls;
}

export interface ProtectedResourceResult {
  metadata: ProtectedResourceMetadata;
  /** The URL the document was read from. */
  url: string;
  /** True when that URL came from the WWW-Authenticate challenge. */
  fromChallenge: boolean;
}

export async function fetchProtectedResourceMetadata(
  mcpUrl: string,
  challenge: BearerChallenge | undefined,
  deps: DiscoveryDeps,
  trace?: Trace,
): Promise<ProtectedResourceResult> {
  const what = "protected resource metadata";
  const candidates = challenge?.resourceMetadata
    ? [challenge.resourceMetadata]
    : protectedResourceMetadataUrls(mcpUrl);
  const fromChallenge = Boolean(challenge?.resourceMetadata);
  if (fromChallenge && !URL.canParse(challenge!.resourceMetadata!)) {
    throw new ProtocolError(`the WWW-Authenticate resource_metadata of ${describeUrl(mcpUrl)} is not a URL`, {
      server: describeUrl(mcpUrl),
      field: "resource_metadata",
      problem: "invalid_metadata",
    });
  }
  for (const candidate of candidates) {
    const doc = await fetchDocument(candidate, what, deps, trace);
    if (doc.status >= 500 || doc.status === 429) throw serverError(doc, what);
    if (!doc.response.ok) continue;
    const server = describeUrl(doc.url);
    const metadata = await readDocument(protectedResourceMetadataSchema, doc.response, what, server);
    if (!resourceCovers(metadata.resource, mcpUrl)) {
      throw new ProtocolError(
        `${what} at ${server} is for another resource: it names ${describeUrl(metadata.resource)}, not ${describeUrl(mcpUrl)} (RFC 9728 §3.3)`,
        {
          server,
          field: "resource",
          problem: "resource_mismatch",
          expected: describeUrl(mcpUrl),
          actual: describeUrl(metadata.resource),
        },
      );
    }
    return { metadata, url: doc.url, fromChallenge };
  }
  const tried = candidates.map((c) => describeUrl(c)).join(", ");
  throw new ProtocolError(
    `${describeUrl(mcpUrl)} publishes no protected resource metadata (RFC 9728); tried ${tried}`,
    {
      server: describeUrl(mcpUrl),
      field: "resource_metadata",
      problem: "no_resource_metadata",
    },
  );
}

// ---- step 3: choosing the authorization server ---------------------------------------------

/**
 * RFC 9728 §7.6 leaves the choice among several authorization servers to the client: we take
 * the first unless the user named one, which must then be listed (a resource server decides
 * which issuers it trusts, not the client).
 */
export function chooseAuthorizationServer(prm: ProtectedResourceResult, preferred?: string): string {
  const list = prm.metadata.authorization_servers ?? [];
  const server = describeUrl(prm.url);
  if (list.length === 0) {
    throw new ProtocolError(`protected resource metadata at ${server} lists no authorization_servers`, {
      server,
      field: "authorization_servers",
      problem: "invalid_metadata",
    });
  }
  let chosen = list[0]!;
  if (preferred !== undefined) {
    const match = list.find((a) => issuerMatches(a, preferred) || issuerMatches(preferred, a));
    if (!match) {
      throw new ProtocolError(
        `${preferred} is not one of the authorization servers ${server} lists (${list.join(", ")})`,
        {
          server,
          field: "authorization_servers",
          problem: "authorization_server_not_listed",
        },
      );
    }
    chosen = match;
  }
  // MCP authorization, "Communication Security": all authorization server endpoints MUST be HTTPS.
  assertSecureUrl(chosen, "authorization server");
  const u = new URL(chosen);
  if (u.search || u.hash) {
    throw new ProtocolError(
      `authorization server ${describeUrl(chosen)} has a query or fragment; an issuer must not (RFC 8414 §2)`,
      {
        server,
        field: "authorization_servers",
        problem: "invalid_metadata",
      },
    );
  }
  return chosen;
}

// ---- step 4: authorization-server metadata (RFC 8414 / OpenID Discovery) --------------------

export interface MetadataCandidate {
  url: string;
  kind: "oauth" | "oidc";
}

/** The metadata URLs for an issuer, in the order the MCP specification gives. */
export function authorizationServerMetadataUrls(issuer: string): MetadataCandidate[] {
  const u = new URL(issuer);
  // RFC 8414 §3.1: a terminating "/" is removed before inserting the well-known segment.
  const path = u.pathname.replace(/\/+$/, "");
  if (!path) {
    return [
      { url: `${u.origin}/.well-known/oauth-authorization-server`, kind: "oauth" },
      { url: `${u.origin}/.well-known/openid-configuration`, kind: "oidc" },
    ];
  }
  return [
    { url: `${u.origin}/.well-known/oauth-authorization-server${path}`, kind: "oauth" },
    { url: `${u.origin}/.well-known/openid-configuration${path}`, kind: "oidc" },
    { url: `${u.origin}${path}/.well-known/openid-configuration`, kind: "oidc" },
  ];
}

export interface AuthorizationServerResult {
  issuer: string;
  metadata: AuthorizationServerMetadata;
  url: string;
  kind: "oauth" | "oidc";
}

export async function fetchAuthorizationServerMetadata(
  issuer: string,
  deps: DiscoveryDeps,
  trace?: Trace,
): Promise<AuthorizationServerResult> {
  const what = "authorization server metadata";
  const candidates = authorizationServerMetadataUrls(issuer);
  for (const candidate of candidates) {
    const doc = await fetchDocument(candidate.url, what, deps, trace);
    if (doc.status >= 500 || doc.status === 429) throw serverError(doc, what);
    if (!doc.response.ok) continue;
    const server = describeUrl(doc.url);
    const metadata = await readDocument(authorizationServerMetadataSchema, doc.response, what, server);
    // RFC 8414 §3.3 (and OpenID Discovery §4.3): a mismatch means the document may be an
    // impersonation; its endpoints must not be used.
    if (!issuerMatches(issuer, metadata.issuer)) {
      throw new ProtocolError(
        `${what} at ${server} states issuer ${describeUrl(metadata.issuer)}, but it was fetched for ${describeUrl(issuer)} (RFC 8414 §3.3)`,
        {
          server,
          field: "issuer",
          problem: "issuer_mismatch",
          expected: issuer,
          actual: metadata.issuer,
        },
      );
    }
    assertEndpointsSecure(metadata);
    return { issuer: metadata.issuer, metadata, url: doc.url, kind: candidate.kind };
  }
  throw new ProtocolError(
    `no authorization server metadata for ${describeUrl(issuer)}; tried ${candidates.map((c) => describeUrl(c.url)).join(", ")}`,
    { server: describeUrl(issuer), field: "issuer", problem: "no_authorization_server_metadata" },
  );
}

const ENDPOINT_FIELDS = [
  "authorization_endpoint",
  "token_endpoint",
  "registration_endpoint",
  "revocation_endpoint",
  "device_authorization_endpoint",
  "introspection_endpoint",
  "jwks_uri",
] as const;

/** Every endpoint the metadata names must be HTTPS (loopback excepted): a token must never cross plain HTTP. */
export function assertEndpointsSecure(metadata: AuthorizationServerMetadata): void {
  for (const field of ENDPOINT_FIELDS) {
    const value = metadata[field];
    if (typeof value === "string") assertSecureUrl(value, field);
  }
}

// ---- capabilities (pure) -------------------------------------------------------------------

export const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

export interface Capabilities {
  /** MCP authorization, "Authorization Code Protection": S256 must be advertised. */
  pkceS256: boolean;
  authorizationCode: boolean;
  dynamicRegistration: boolean;
  clientIdMetadataDocument: boolean;
  /** `true`/`false` when grant_types_supported says; `undefined` when the server does not list grants. */
  refreshToken: boolean | undefined;
  deviceFlow: boolean;
  clientCredentials: boolean;
  revocation: boolean;
  offlineAccess: boolean;
  issParameter: boolean;
}

export function capabilitiesOf(metadata: AuthorizationServerMetadata): Capabilities {
  const grants = metadata.grant_types_supported;
  // RFC 8414 §2: grant_types_supported defaults to ["authorization_code", "implicit"].
  const grantListed = (g: string) => (grants ? grants.includes(g) : g === "authorization_code");
  return {
    pkceS256: (metadata.code_challenge_methods_supported ?? []).includes("S256"),
    authorizationCode:
      Boolean(metadata.authorization_endpoint) &&
      (metadata.response_types_supported ?? ["code"]).includes("code") &&
      grantListed("authorization_code"),
    dynamicRegistration: Boolean(metadata.registration_endpoint),
    clientIdMetadataDocument: metadata.client_id_metadata_document_supported === true,
    refreshToken: grants ? grants.includes("refresh_token") : undefined,
    deviceFlow:
      Boolean(metadata.device_authorization_endpoint) && (!grants || grants.includes(DEVICE_CODE_GRANT)),
    clientCredentials: Boolean(grants?.includes("client_credentials")),
    revocation: Boolean(metadata.revocation_endpoint),
    offlineAccess: Boolean(metadata.scopes_supported?.includes("offline_access")),
    issParameter: metadata.authorization_response_iss_parameter_supported === true,
  };
}

// ---- the whole chain ------------------------------------------------------------------------

export interface DiscoveryResult {
  mcpUrl: string;
  /** The resource indicator to send (RFC 8707): the protected-resource metadata's `resource`. */
  resource: string;
  challenge: BearerChallenge;
  protectedResource: ProtectedResourceResult;
  authorizationServer: AuthorizationServerResult;
  capabilities: Capabilities;
  /**
   * True for a 2025-03-26 server (no protected-resource metadata): `protectedResource` is then
   * made up from the server URL, and its `url` is the authorization-server metadata's.
   */
  legacy: boolean;
}

export interface DiscoverOptions {
  /** Pick this one among the listed authorization servers. */
  authorizationServer?: string;
}

export async function discover(
  mcpUrl: string,
  deps: DiscoveryDeps,
  options: DiscoverOptions = {},
  trace?: Trace,
): Promise<DiscoveryResult> {
  const url = canonicalServerUri(mcpUrl);
  const probe = await probeServer(url, deps, trace);
  const open = probe.status >= 200 && probe.status < 300;
  // A 2xx probe: the server may still protect later requests; its well-known metadata says so.
  const challenge = open ? {} : requireChallenge(probe);
  let protectedResource: ProtectedResourceResult;
  try {
    protectedResource = await fetchProtectedResourceMetadata(url, challenge, deps, trace);
  } catch (error) {
    // Nothing (or nothing valid: a catch-all page) at the well-known URLs of a server that
    // answered without a token: it does not want one.
    if (open && error instanceof ProtocolError) requireChallenge(probe);
    if (!isNoResourceMetadata(error) || challenge.resourceMetadata) throw error;
    return legacyDiscovery(url, challenge, deps, trace, options);
  }
  const issuer = chooseAuthorizationServer(protectedResource, options.authorizationServer);
  const authorizationServer = await fetchAuthorizationServerMetadata(issuer, deps, trace);
  return {
    mcpUrl: url,
    // Sent as advertised: the resource server compares the audience with its own identifier,
    // and re-serializing a bare origin would add a "/" that exact-match servers refuse.
    resource: protectedResource.metadata.resource,
    challenge,
    protectedResource,
    authorizationServer,
    capabilities: capabilitiesOf(authorizationServer.metadata),
    legacy: false,
  };
}

function isNoResourceMetadata(error: unknown): boolean {
  return error instanceof ProtocolError && error.fields.problem === "no_resource_metadata";
}

// ---- the 2025-03-26 fallback ------------------------------------------------------------------

/**
 * MCP 2025-03-26, "Server Metadata Discovery" and "Fallbacks for Servers without Metadata
 * Discovery": the authorization base URL is the MCP server URL without its path; metadata at
 * `<base>/.well-known/oauth-authorization-server` (RFC 8414), else `/authorize`, `/token` and
 * `/register` at that base. The metadata comes from the MCP server's own origin, so an issuer it
 * states on that same origin (e.g. `<base>/oauth`) is accepted: it is the same party either way.
 */
export async function fetchLegacyAuthorizationServer(
  mcpUrl: string,
  deps: DiscoveryDeps,
  trace?: Trace,
): Promise<AuthorizationServerResult> {
  const what = "authorization server metadata";
  const base = new URL(mcpUrl).origin;
  const metadataUrl = `${base}/.well-known/oauth-authorization-server`;
  const doc = await fetchDocument(metadataUrl, what, deps, trace);
  if (doc.status >= 500 || doc.status === 429) throw serverError(doc, what);
  if (!doc.response.ok) {
    const metadata = defaultEndpointsMetadata(base);
    assertEndpointsSecure(metadata);
    return { issuer: base, metadata, url: metadataUrl, kind: "oauth" };
  }
  const server = describeUrl(doc.url);
  const metadata = await readDocument(authorizationServerMetadataSchema, doc.response, what, server);
  if (new URL(metadata.issuer).origin !== base) {
    throw new ProtocolError(
      `${what} at ${server} states issuer ${describeUrl(metadata.issuer)}, which is not on the MCP server's origin ${base} (MCP 2025-03-26 discovery)`,
      { server, field: "issuer", problem: "issuer_mismatch", expected: base, actual: metadata.issuer },
    );
  }
  assertEndpointsSecure(metadata);
  return { issuer: metadata.issuer, metadata, url: doc.url, kind: "oauth" };
}

/** The endpoints a 2025-03-26 client assumes when the server publishes no metadata. */
export function defaultEndpointsMetadata(base: string): AuthorizationServerMetadata {
  return authorizationServerMetadataSchema.parse({
    issuer: base,
    authorization_endpoint: `${base}/authorize`,
    token_endpoint: `${base}/token`,
    registration_endpoint: `${base}/register`,
    response_types_supported: ["code"],
    grant_types_supported: ["authorization_code", "refresh_token"],
    // That revision required PKCE of every client, so S256 is what such a server speaks.
    code_challenge_methods_supported: ["S256"],
  });
}

async function legacyDiscovery(
  url: string,
  challenge: BearerChallenge,
  deps: DiscoveryDeps,
  trace: Trace | undefined,
  options: DiscoverOptions,
): Promise<DiscoveryResult> {
  const authorizationServer = await fetchLegacyAuthorizationServer(url, deps, trace);
  if (
    options.authorizationServer &&
    !issuerMatches(options.authorizationServer, authorizationServer.issuer)
  ) {
    throw new ProtocolError(
      `${describeUrl(url)} publishes no protected resource metadata, so its authorization server is ${authorizationServer.issuer}, not ${options.authorizationServer}`,
      {
        server: describeUrl(url),
        field: "authorization_servers",
        problem: "authorization_server_not_listed",
      },
    );
  }
  return {
    mcpUrl: url,
    // No metadata names the resource: the canonical server URI is its identifier (RFC 8707 §2).
    resource: url,
    challenge,
    protectedResource: {
      metadata: { resource: url, authorization_servers: [authorizationServer.issuer] },
      url: authorizationServer.url,
      fromChallenge: false,
    },
    authorizationServer,
    capabilities: capabilitiesOf(authorizationServer.metadata),
    legacy: true,
  };
}
