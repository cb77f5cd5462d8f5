/**
 * Small, deliberately configurable servers for discovery and hostile-metadata tests: one
 * node:http server on 127.0.0.1 plays the MCP resource server and a minimal authorization
 * server, and every document it serves can be bent out of shape.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { recordIssuedInBody, recordIssuedInLocation } from "../support/secret-scan.js";

export interface StubRequest {
  method: string;
  url: URL;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface StubResponse {
  status?: number;
  headers?: Record<string, string>;
  json?: unknown;
  body?: string;
}

export interface StubServer {
  readonly origin: string;
  readonly requests: StubRequest[];
  /** Paths requested, in order (e.g. to assert a discovery order). */
  paths(): string[];
  close(): Promise<void>;
}

export async function startStub(
  handler: (req: StubRequest, origin: string) => StubResponse | Promise<StubResponse>,
): Promise<StubServer> {
  const requests: StubRequest[] = [];
  let origin = "";
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const r: StubRequest = {
        method: req.method ?? "GET",
        url: new URL(req.url ?? "/", origin),
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(r);
      try {
        const out = await handler(r, origin);
        // What a stub hands out is on the record for the suite-wide secret scan.
        recordIssuedInBody(out.json);
        recordIssuedInLocation(out.headers?.location);
        const headers: Record<string, string> = { ...(out.headers ?? {}) };
        let body = out.body ?? "";
        if (out.json !== undefined) {
          headers["content-type"] ??= "application/json";
          body = JSON.stringify(out.json);
        }
        res.writeHead(out.status ?? 200, headers).end(body);
      } catch (error) {
        res.writeHead(500).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    requests,
    paths: () => requests.map((r) => r.url.pathname),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface FakeOAuthOptions {
  /** Path of the issuer ("" for a root issuer, e.g. "/tenant"). */
  issuerPath?: string;
  /** Which well-known document the AS serves its metadata at. */
  metadataAt?: "oauth" | "oidc-insert" | "oidc-append" | "none";
  /** The 401's WWW-Authenticate; default names the PRM URL and scope "tools". null: none. */
  challenge?: (origin: string) => string | null;
  /** Where the PRM is served: the path-inserted well-known URI (default), only the root one, or nowhere (a 2025-03-26 server). */
  prmAt?: "path" | "root" | "none";
  /** Answers the MCP endpoint instead of the 401 (e.g. a server that lets `initialize` through). */
  mcp?: (req: StubRequest, origin: string) => StubResponse | undefined;
  /** Patches the protected-resource metadata. */
  prm?: (doc: Record<string, unknown>, origin: string) => Record<string, unknown>;
  /** Patches the authorization-server metadata. */
  metadata?: (doc: Record<string, unknown>, origin: string) => Record<string, unknown>;
  /** Alters the authorization response before the redirect (a hostile AS). */
  callback?: (params: URLSearchParams) => void;
  /** Overrides the token response. */
  token?: (params: URLSearchParams) => StubResponse | undefined;
  /** Overrides the revocation response (RFC 7009). */
  revoke?: (params: URLSearchParams) => StubResponse | undefined;
}

export interface FakeOAuth extends StubServer {
  mcpUrl: string;
  issuer: string;
  /** Counters the tests assert on. */
  counts: { registrations: number; tokenRequests: number; authorizations: number; revocations: number };
  /** The last parameters the authorization endpoint received. */
  lastAuthorization?: URLSearchParams;
  lastTokenRequest?: URLSearchParams;
  /** Token requests with this grant_type, in order (e.g. to count refreshes). */
  tokenRequestsOf(grantType: string): URLSearchParams[];
  /**
   * Every secret value this server issued or received so far: access and refresh tokens and
   * client secrets it handed out, codes, verifiers, device codes, client secrets and
   * assertions sent to its token endpoint, and Basic credentials. For exact-value scans of
   * everything Tokenkeeper printed, stored as status, logged or sent.
   */
  secrets(): string[];
  /** Adds values a test's own hostile responses issued (tokens it made up) to secrets(). */
  noteSecret(...values: string[]): void;
}

/** Form parameters that carry a credential in a request to an authorization server. */
export const CREDENTIAL_PARAMS = [
  "refresh_token",
  "code",
  "code_verifier",
  "client_secret",
  "client_assertion",
  "device_code",
  "token",
];

/** The secret values a request carried (credential parameters, a Basic or Bearer credential). */
export function secretsInRequest(req: StubRequest): string[] {
  const out: string[] = [];
  if (req.method === "POST") {
    const form = new URLSearchParams(req.body);
    for (const name of CREDENTIAL_PARAMS) out.push(...form.getAll(name));
  }
  const auth = req.headers.authorization;
  const m = typeof auth === "string" ? /^(\S+)\s+(\S+)/.exec(auth) : null;
  if (m) {
    out.push(m[2]!);
    if (m[1]!.toLowerCase() === "basic") {
      const decoded = Buffer.from(m[2]!, "base64").toString("utf8");
      out.push(decodeURIComponent(decoded.slice(decoded.indexOf(":") + 1)));
    }
  }
  return out.filter((v) => v.length >= 4);
}

/**
 * A resource server at /mcp and an authorization server on the same origin, correct by default:
 * DCR, PKCE S256, iss in responses, opaque tokens with a refresh token.
 */
export async function startFakeOAuth(options: FakeOAuthOptions = {}): Promise<FakeOAuth> {
  const issuerPath = options.issuerPath ?? "";
  const counts = { registrations: 0, tokenRequests: 0, authorizations: 0, revocations: 0 };
  const state: { lastAuthorization?: URLSearchParams; lastTokenRequest?: URLSearchParams } = {};
  const codes = new Map<string, { challenge: string; redirectUri: string }>();
  const issued = new Set<string>();

  const metadataPath = (() => {
    switch (options.metadataAt ?? "oauth") {
      case "oauth":
        return `/.well-known/oauth-authorization-server${issuerPath}`;
      case "oidc-insert":
        return `/.well-known/openid-configuration${issuerPath}`;
      case "oidc-append":
        return `${issuerPath}/.well-known/openid-configuration`;
      case "none":
        return undefined;
    }
  })();
  const prmPath =
    options.prmAt === "none"
      ? undefined
      : options.prmAt === "root"
        ? "/.well-known/oauth-protected-resource"
        : "/.well-known/oauth-protected-resource/mcp";

  const stub = await startStub(async (req, origin) => {
    const issuer = `${origin}${issuerPath}`;
    const path = req.url.pathname;
    if (path === "/mcp") {
      const custom = options.mcp?.(req, origin);
      if (custom) return custom;
      const challenge = options.challenge
        ? options.challenge(origin)
        : prmPath
          ? `Bearer resource_metadata="${origin}${prmPath}", scope="tools"`
          : 'Bearer realm="mcp"';
      return {
        status: 401,
        headers: challenge ? { "www-authenticate": challenge } : {},
        json: { error: "invalid_token" },
      };
    }
    if (path === prmPath) {
      const doc = {
        resource: `${origin}/mcp`,
        authorization_servers: [issuer],
        scopes_supported: ["tools", "admin"],
      };
      return { json: options.prm ? options.prm(doc, origin) : doc };
    }
    if (path === metadataPath) {
      const doc: Record<string, unknown> = {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        registration_endpoint: `${issuer}/register`,
        revocation_endpoint: `${issuer}/revoke`,
        response_types_supported: ["code"],
        grant_types_supported: ["authorization_code", "refresh_token"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["none", "client_secret_basic"],
        scopes_supported: ["tools", "admin", "offline_access"],
        authorization_response_iss_parameter_supported: true,
      };
      return { json: options.metadata ? options.metadata(doc, origin) : doc };
    }
    if (path === `${issuerPath}/register` && req.method === "POST") {
      counts.registrations++;
      const body = JSON.parse(req.body) as Record<string, unknown>;
      const confidential = body.token_endpoint_auth_method !== "none";
      const clientSecret = randomBytes(16).toString("hex");
      if (confidential) issued.add(clientSecret);
      return {
        status: 201,
        json: {
          ...body,
          client_id: `dyn-${randomBytes(6).toString("hex")}`,
          ...(confidential ? { client_secret: clientSecret } : {}),
        },
      };
    }
    if (path === `${issuerPath}/authorize`) {
      counts.authorizations++;
      const p = req.url.searchParams;
      state.lastAuthorization = p;
      const code = randomBytes(12).toString("hex");
      codes.set(code, { challenge: p.get("code_challenge") ?? "", redirectUri: p.get("redirect_uri") ?? "" });
      const back = new URLSearchParams({ code, state: p.get("state") ?? "", iss: issuer });
      options.callback?.(back);
      const target = new URL(p.get("redirect_uri") ?? "http://127.0.0.1/");
      target.search = back.toString();
      return { status: 302, headers: { location: target.href } };
    }
    if (path === `${issuerPath}/token` && req.method === "POST") {
      counts.tokenRequests++;
      const p = new URLSearchParams(req.body);
      state.lastTokenRequest = p;
      const custom = options.token?.(p);
      if (custom) return custom;
      if (p.get("grant_type") === "authorization_code") {
        const entry = codes.get(p.get("code") ?? "");
        if (!entry) return { status: 400, json: { error: "invalid_grant" } };
        const { createHash } = await import("node:crypto");
        const expected = createHash("sha256")
          .update(p.get("code_verifier") ?? "")
          .digest("base64url");
        if (expected !== entry.challenge)
          return {
            status: 400,
            json: { error: "invalid_grant", error_description: "PKCE verification failed" },
          };
      }
      const accessToken = `at-${randomBytes(12).toString("hex")}`;
      const refreshToken = `rt-${randomBytes(12).toString("hex")}`;
      issued.add(accessToken).add(refreshToken);
      return {
        headers: { "cache-control": "no-store" },
        json: {
          access_token: accessToken,
          token_type: "Bearer",
          expires_in: 600,
          refresh_token: refreshToken,
          scope: "tools",
        },
      };
    }
    if (path === `${issuerPath}/revoke` && req.method === "POST") {
      counts.revocations++;
      const custom = options.revoke?.(new URLSearchParams(req.body));
      if (custom) return custom;
      return { status: 200, body: "" };
    }
    return { status: 404, json: { error: "not_found" } };
  });
  const fake = Object.assign(stub, {
    mcpUrl: `${stub.origin}/mcp`,
    issuer: `${stub.origin}${issuerPath}`,
    counts,
  }) as FakeOAuth;
  Object.defineProperty(fake, "lastAuthorization", { get: () => state.lastAuthorization });
  Object.defineProperty(fake, "lastTokenRequest", { get: () => state.lastTokenRequest });
  fake.tokenRequestsOf = (grantType) =>
    stub.requests
      .filter((r) => r.method === "POST" && r.url.pathname === `${issuerPath}/token`)
      .map((r) => new URLSearchParams(r.body))
      .filter((p) => p.get("grant_type") === grantType);
  fake.noteSecret = (...values) => {
    for (const v of values) issued.add(v);
  };
  fake.secrets = () => [...new Set([...issued, ...stub.requests.flatMap(secretsInRequest)])];
  return fake;
}
