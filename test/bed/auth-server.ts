// A real OAuth 2.1 authorization server for tests, built on oidc-provider and configured like the
// authorization servers remote MCP servers sit behind: open dynamic registration, PKCE, resource
// indicators with JWT access tokens, rotating refresh tokens, device and client-credentials
// grants, revocation. Plus the knobs tests need: auto-consent, injected token-endpoint failures,
// clock skew, counters, and ways to kill grants and refresh tokens behind a client's back.
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { exportJWK, generateKeyPair } from "jose";
import Provider, {
  type BaseToken,
  type Client,
  type Configuration,
  errors,
  type KoaContext,
  type Next,
  type OIDCProviderError,
} from "oidc-provider";
import { recordIssuedInBody, recordIssuedInLocation, recordReceivedParams } from "../support/secret-scan.js";
import { deviceConfirmPage, deviceInputPage, deviceSuccessPage, renderError } from "./auth-pages.js";
import { autoConsent, interactionUrl } from "./auto-consent.js";
import { approveDeviceCode, denyDeviceCode } from "./device-user.js";
import { editForm } from "./form-body.js";
import { closeServer, HOST, listen } from "./http-util.js";
import { MemoryStore } from "./memory-store.js";
import { type TokenFaultKind, type TokenFaultOptions, TokenFaults } from "./token-faults.js";

export type { TokenFaultKind, TokenFaultOptions } from "./token-faults.js";

export interface AuthServerOptions {
  /** Port to bind on 127.0.0.1; 0 (default) picks a free one. */
  port?: number;
  /** Access-token lifetime in seconds (default 3600). */
  accessTokenTtl?: number;
  /** Refresh-token lifetime in seconds (default 14 days), absolute: rotation does not extend it. */
  refreshTokenTtl?: number;
  /** Device-code lifetime in seconds (default 600). */
  deviceCodeTtl?: number;
  /** `interval` advertised in device authorization responses (default 1 s; RFC 8628 default is 5). */
  devicePollInterval?: number;
  /** Rotate the refresh token on every use (default true). */
  rotateRefreshTokens?: boolean;
  /** What the auto-consent user does (default "auto" = approve everything). */
  consent?: "auto" | "deny";
  /** Account id the auto-consent logs in as (default "test-user"). */
  accountId?: string;
  /** Resource indicators (RFC 8707) the server knows from the start. More via addResource(). */
  resources?: string[];
  /** Resource used when an authorization or client-credentials request names none. */
  defaultResource?: string;
  /** Extra scopes to accept and advertise besides the built-in ones. */
  extraScopes?: string[];
  /**
   * Scope assumed when an authorization, device or pushed authorization request has no `scope`
   * (RFC 6749 §3.3 lets the AS pick a default). Default "mcp:tools"; "" to disable, in which
   * case oidc-provider ends a scope-less flow with access_denied ("no scope was granted").
   */
  defaultScope?: string;
}

/** Scopes every resource server of the bed accepts unless addResource() says otherwise. */
export const MCP_SCOPES = ["mcp:tools", "mcp:admin"] as const;
const OIDC_SCOPES = ["openid", "offline_access"] as const;

export type GrantKind = "authorization_code" | "refresh_token" | "client_credentials" | "device_code";

export interface AuthCounters {
  /** Every POST to the token endpoint, including ones answered by an injected fault. */
  tokenRequests: number;
  /** Token requests oidc-provider answered (success or OAuth error), by grant type. */
  grants: Record<GrantKind, number>;
  /** Token requests that were granted, by grant type. */
  grantsSucceeded: Record<GrantKind, number>;
  refreshGrantsSucceeded: number;
  /** refresh_token grants answered invalid_grant, for any reason (reused, revoked, expired, unknown). */
  rejectedRefreshTokens: number;
  /** oidc-provider's internal reason for each rejection, e.g. "refresh token already used". */
  rejectedRefreshReasons: string[];
  /** Presentations of an already-rotated refresh token (each one revoked its whole grant). */
  refreshTokenReuse: number;
  /** Successful dynamic client registrations (RFC 7591), not registerClient() calls. */
  registrations: number;
  /** Revocation requests (RFC 7009) answered 200. */
  revocations: number;
  /** Token requests answered by a failTokenEndpoint() fault. */
  injectedFailures: number;
  /** Unexpected errors inside oidc-provider (also printed to stderr). */
  serverErrors: number;
}

/** A JSON value, as client metadata (RFC 7591 §2) is. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue | undefined };

export interface RegisteredClient {
  client_id: string;
  client_secret?: string;
  [metadata: string]: JsonValue | undefined;
}

export interface AuthServer {
  readonly issuer: string;
  readonly port: number;
  readonly endpoints: {
    authorization: string;
    token: string;
    registration: string;
    revocation: string;
    deviceAuthorization: string;
    /** The device flow's verification_uri. */
    verification: string;
    jwks: string;
    /** RFC 8414 metadata. */
    metadata: string;
  };
  /** Live counters (read them; reset with resetCounters()). */
  readonly counters: AuthCounters;
  resetCounters(): void;
  /** Teaches the server a resource indicator (e.g. an MCP server URL) and the scopes it accepts. */
  addResource(resource: string, scopes?: readonly string[]): void;
  setDefaultResource(resource: string | undefined): void;
  setConsent(mode: "auto" | "deny"): void;
  setRefreshTokenRotation(enabled: boolean): void;
  /** Makes the next `count` token-endpoint requests fail as `kind` (see TokenFaultOptions). */
  failTokenEndpoint(count: number, kind: TokenFaultKind, opts?: TokenFaultOptions): void;
  clearTokenEndpointFailures(): void;
  /** Hangs up the token requests a never-answering fault holds (their clients see a reset). */
  dropHungTokenRequests(): void;
  /** Armed failures not yet used up. */
  readonly pendingTokenEndpointFailures: number;
  /**
   * Skews the server's clock as seen by clients: the HTTP Date header of every response and the
   * iat/exp of JWT access tokens. Expiry decisions inside the server still use the real clock.
   */
  setClockOffset(ms: number): void;
  /** Pre-registers a client directly (no DCR). Generates client_id, and a secret when confidential. */
  registerClient(metadata: Record<string, JsonValue | undefined>): Promise<RegisteredClient>;
  /** Completes the device flow's user step for `userCode` (RFC 8628 §3.3), as an approving user. */
  approveDeviceCode(userCode: string): Promise<void>;
  /** Aborts the device flow's user step; the device's next poll gets access_denied. */
  denyDeviceCode(userCode: string): Promise<void>;
  /** Purges a dynamically registered client, as a provider cleaning up old registrations would. */
  forgetClient(clientId: string): boolean;
  /** Revokes every grant, with all access and refresh tokens issued under it. Returns the count. */
  revokeAllGrants(): Promise<number>;
  /** Revokes the grant a refresh token belongs to. False if the token is unknown. */
  revokeGrantOf(refreshToken: string): Promise<boolean>;
  /** Marks every stored refresh token expired (the next use gets invalid_grant). Returns the count. */
  expireRefreshTokens(): number;
  /** The underlying oidc-provider instance, for anything the bed does not wrap. */
  readonly provider: Provider;
  close(): Promise<void>;
}

const DAY = 24 * 60 * 60;
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

function emptyCounters(): AuthCounters {
  const byGrant = (): Record<GrantKind, number> => ({
    authorization_code: 0,
    refresh_token: 0,
    client_credentials: 0,
    device_code: 0,
  });
  return {
    tokenRequests: 0,
    grants: byGrant(),
    grantsSucceeded: byGrant(),
    refreshGrantsSucceeded: 0,
    rejectedRefreshTokens: 0,
    rejectedRefreshReasons: [],
    refreshTokenReuse: 0,
    registrations: 0,
    revocations: 0,
    injectedFailures: 0,
    serverErrors: 0,
  };
}

function seconds(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`${name} must be a whole number of seconds >= 1`);
  return v;
}

export async function startAuthServer(opts: AuthServerOptions = {}): Promise<AuthServer> {
  const accessTokenTtl = seconds("accessTokenTtl", opts.accessTokenTtl, 3600);
  const refreshTokenTtl = seconds("refreshTokenTtl", opts.refreshTokenTtl, 14 * DAY);
  const deviceCodeTtl = seconds("deviceCodeTtl", opts.deviceCodeTtl, 600);
  const devicePollInterval = opts.devicePollInterval ?? 1;
  const defaultScope = opts.defaultScope ?? "mcp:tools";

  const state = {
    consent: opts.consent ?? "auto",
    rotate: opts.rotateRefreshTokens ?? true,
    defaultResource: opts.defaultResource,
    clockOffsetMs: 0,
  };
  const resources = new Map<string, readonly string[]>();
  for (const r of opts.resources ?? []) resources.set(r, MCP_SCOPES);
  const scopes = [...new Set<string>([...OIDC_SCOPES, ...MCP_SCOPES, ...(opts.extraScopes ?? [])])];

  let counters = emptyCounters();
  const store = new MemoryStore();
  const faults = new TokenFaults(() => {
    counters.injectedFailures++;
  });

  // A fresh signing key per server, so the provider never falls back to its (warned-about)
  // development keys and tokens from one bed never verify against another.
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: "RS256", use: "sig" };

  // The issuer must name the port, so bind first and route requests to the provider once built.
  let callback: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const { server, port } = await listen((req, res) => {
    if (state.clockOffsetMs !== 0)
      res.setHeader("Date", new Date(Date.now() + state.clockOffsetMs).toUTCString());
    if (!callback) {
      res.writeHead(503).end();
      return;
    }
    callback(req, res);
  }, opts.port ?? 0);
  const issuer = `http://${HOST}:${port}`;

  const resourceServerInfo = (resource: string) => {
    const accepted = resources.get(resource);
    if (!accepted) throw new errors.InvalidTarget(`unknown resource indicator ${resource}`);
    // RFC 8707 §2: the token is audience-restricted to the resource; the MCP server checks aud.
    return {
      scope: accepted.join(" "),
      audience: resource,
      accessTokenFormat: "jwt",
      accessTokenTTL: accessTokenTtl,
      jwt: { sign: { alg: "RS256" } },
    };
  };

  const configuration: Configuration = {
    adapter: store.adapterFactory(),
    jwks: { keys: [signingKey] },
    // The MCP scopes are listed with the OIDC ones so that discovery advertises them and DCR
    // accepts clients registering `scope: "mcp:tools"` (oidc-provider checks it against this).
    scopes,
    claims: { openid: ["sub"] },
    // OAuth 2.1 drops the implicit grant: the authorization endpoint only issues codes.
    responseTypes: ["code"],
    // RFC 7591 §2 defaults; DCR clients that want refresh tokens must ask for the grant type.
    clientDefaults: {
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      id_token_signed_response_alg: "RS256",
    },
    // PKCE for every client, public or confidential, as OAuth 2.1 and the MCP authorization spec
    // require; oidc-provider only implements S256, so "plain" is refused.
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true, initialAccessToken: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true, allowedPolicy: revocationAllowed },
      introspection: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: deviceInputPage,
        userCodeConfirmSource: deviceConfirmPage,
        successSource: deviceSuccessPage,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) =>
          oneOf?.[0] ?? state.defaultResource,
        // Without this, a refresh (or code exchange) that repeats no `resource` and includes
        // `openid` would get an opaque userinfo token; MCP clients need the JWT for the resource.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => resourceServerInfo(resource),
      },
    },
    interactions: { url: interactionUrl },
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    // Issue a refresh token to every client allowed the grant, with or without offline_access:
    // MCP clients rarely ask for offline_access, and real MCP authorization servers do not insist.
    issueRefreshToken: async (_ctx: unknown, client: Client) => client.grantTypeAllowed("refresh_token"),
    // Tokens outlive the (throwaway) browser session of the auto-consent user.
    expiresWithSession: async () => false,
    // Rotate on every use, for every client (RFC 9700 §4.14.2 demands rotation or sender
    // constraint for public clients; oidc-provider's default would spare confidential clients
    // until 70% of the token's lifetime). A function rather
    // than a boolean so tests can flip rotation on a running server.
    rotateRefreshToken: () => state.rotate,
    ttl: {
      AccessToken: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) =>
        token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: () => deviceCodeTtl,
      IdToken: () => 3600,
      Interaction: () => 600,
      Session: () => DAY,
      // Must outlive every refresh token issued under the grant (whose clock starts at the code
      // or device-code exchange, a little later), or refreshes would fail early.
      Grant: () => refreshTokenTtl + 3600,
      // Absolute lifetime: a rotated token inherits the first one's issue time (iiat).
      RefreshToken: (_ctx: unknown, token: BaseToken) => {
        const now = Math.floor(Date.now() / 1000);
        return Math.max(1, (token.iiat ?? now) + refreshTokenTtl - now);
      },
    },
    formats: {
      customizers: {
        jwt: (_ctx: unknown, _token: unknown, jwt: { payload: Record<string, unknown> }) => {
          const shift = Math.round(state.clockOffsetMs / 1000);
          if (shift === 0) return;
          for (const claim of ["iat", "exp", "nbf"]) {
            const v = jwt.payload[claim];
            if (typeof v === "number") jwt.payload[claim] = v + shift;
          }
        },
      },
    },
    clientBasedCORS: () => false,
    renderError,
  };

  let p: Provider;
  try {
    p = new Provider(issuer, configuration);
  } catch (err) {
    await closeServer(server);
    throw err;
  }
  const paths = {
    authorization: p.pathFor("authorization"),
    token: p.pathFor("token"),
    revocation: p.pathFor("revocation"),
    deviceAuthorization: p.pathFor("device_authorization"),
    par: p.pathFor("pushed_authorization_request"),
  };

  /** Fills in `defaultScope` when a request has no scope (and no request object carrying one). */
  const withDefaultScope = (params: URLSearchParams): boolean => {
    if (!defaultScope || params.has("scope") || params.has("request") || params.has("request_uri"))
      return false;
    params.set("scope", defaultScope);
    return true;
  };

  p.on("grant.success", (ctx: KoaContext) => {
    const kind = grantKind(ctx);
    if (!kind) return;
    counters.grants[kind]++;
    counters.grantsSucceeded[kind]++;
    if (kind === "refresh_token") counters.refreshGrantsSucceeded++;
  });
  p.on("grant.error", (ctx: KoaContext, err: OIDCProviderError) => {
    const kind = grantKind(ctx);
    if (!kind) return;
    counters.grants[kind]++;
    if (kind === "refresh_token" && err.error === "invalid_grant") {
      counters.rejectedRefreshTokens++;
      counters.rejectedRefreshReasons.push(err.error_detail ?? err.error_description ?? "");
      if (err.error_detail === "refresh token already used") counters.refreshTokenReuse++;
    }
  });
  p.on("registration_create.success", () => {
    counters.registrations++;
  });
  p.on("server_error", (ctx: KoaContext, err: Error) => {
    counters.serverErrors++;
    // A real bug in the bed's configuration: never swallow it.
    console.error(`[test-bed auth server] server_error on ${ctx.method} ${ctx.path}:`, err);
  });

  // Every secret this server hands out (token and registration responses, codes in redirects)
  // goes on the record for the suite-wide secret scan (test/support/secret-scan.ts).
  p.use(async (ctx: KoaContext, next: Next) => {
    await next();
    recordIssuedInBody(ctx.body);
    recordIssuedInLocation(ctx.res.getHeader("location"));
    recordReceivedParams(ctx.oidc?.params);
  });
  p.use(async (ctx: KoaContext, next: Next) => {
    if (ctx.method === "GET" && ctx.path === paths.authorization) {
      const url = new URL(ctx.req.url ?? "/", issuer);
      if (withDefaultScope(url.searchParams)) ctx.req.url = `${url.pathname}${url.search}`;
    }
    if (ctx.method !== "POST") return next();
    if (ctx.path === paths.deviceAuthorization || ctx.path === paths.par) {
      await editForm(ctx.req, withDefaultScope);
    }
    if (ctx.path === paths.token) {
      counters.tokenRequests++;
      return faults.handle(ctx, next);
    }
    await next();
    if (ctx.path === paths.revocation && ctx.status === 200) counters.revocations++;
    // RFC 8628 §3.2: without `interval` clients must wait 5 s between polls; the bed says less.
    if (ctx.path === paths.deviceAuthorization && ctx.status === 200 && isRecord(ctx.body)) {
      ctx.body.interval = devicePollInterval;
    }
  });
  p.use(
    autoConsent(p, {
      consent: () => state.consent,
      accountId: opts.accountId ?? "test-user",
      resourceScopes: (r) => (resources.has(r) ? [...(resources.get(r) ?? [])] : undefined),
      defaultResource: () => state.defaultResource,
      oidcScopes: new Set(scopes),
    }),
  );
  callback = p.callback();

  const endpoints = {
    authorization: `${issuer}${p.pathFor("authorization")}`,
    token: `${issuer}${paths.token}`,
    registration: `${issuer}${p.pathFor("registration")}`,
    revocation: `${issuer}${paths.revocation}`,
    deviceAuthorization: `${issuer}${paths.deviceAuthorization}`,
    verification: `${issuer}${p.pathFor("code_verification")}`,
    jwks: `${issuer}${p.pathFor("jwks")}`,
    metadata: `${issuer}/.well-known/oauth-authorization-server`,
  };

  return {
    issuer,
    port,
    endpoints,
    provider: p,
    get counters() {
      return counters;
    },
    resetCounters() {
      counters = emptyCounters();
    },
    addResource(resource, accepted = MCP_SCOPES) {
      resources.set(resource, [...accepted]);
    },
    setDefaultResource(resource) {
      state.defaultResource = resource;
    },
    setConsent(mode) {
      state.consent = mode;
    },
    setRefreshTokenRotation(enabled) {
      state.rotate = enabled;
    },
    failTokenEndpoint(count, kind, faultOpts) {
      faults.arm(count, kind, faultOpts);
    },
    clearTokenEndpointFailures() {
      faults.clear();
    },
    dropHungTokenRequests() {
      faults.dropHanging();
    },
    get pendingTokenEndpointFailures() {
      return faults.pending;
    },
    setClockOffset(ms) {
      state.clockOffsetMs = ms;
    },
    async registerClient(metadata) {
      const client: RegisteredClient = { client_id: `pre-${randomUUID()}`, ...metadata };
      const method = client.token_endpoint_auth_method ?? "client_secret_basic";
      if (method !== "none" && client.client_secret === undefined && method !== "private_key_jwt") {
        client.client_secret = randomBytes(32).toString("base64url");
      }
      await p.Client.validate(client);
      await p.Client.adapter.upsert(client.client_id, { ...client });
      return client;
    },
    approveDeviceCode: (userCode) => approveDeviceCode(endpoints.verification, userCode),
    denyDeviceCode: (userCode) => denyDeviceCode(endpoints.verification, userCode),
    async revokeAllGrants() {
      const grants = store.list("Grant");
      for (const g of grants) if (typeof g.jti === "string") store.revokeGrant(g.jti);
      return grants.length;
    },
    async revokeGrantOf(refreshToken) {
      const rt = await p.RefreshToken.find(refreshToken, { ignoreExpiration: true });
      if (!rt?.grantId) return false;
      store.revokeGrant(rt.grantId);
      return true;
    },
    expireRefreshTokens() {
      const tokens = store.list("RefreshToken");
      const past = Math.floor(Date.now() / 1000) - 1;
      for (const t of tokens) t.exp = past;
      return tokens.length;
    },
    forgetClient(clientId: string) {
      return store.forget("Client", clientId);
    },
    async close() {
      faults.close();
      await closeServer(server);
    },
  };
}

function grantKind(ctx: KoaContext): GrantKind | undefined {
  const gt = ctx.oidc?.params?.grant_type;
  if (gt === DEVICE_GRANT) return "device_code";
  if (gt === "authorization_code" || gt === "refresh_token" || gt === "client_credentials") return gt;
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * RFC 7009 §2.1: a client may only revoke its own tokens. Same policy as oidc-provider's
 * default (refuse confidential clients loudly, ignore public ones silently), minus its notice.
 */
async function revocationAllowed(
  _ctx: unknown,
  client: Client,
  token: { clientId?: string },
): Promise<boolean> {
  if (token.clientId === client.clientId) return true;
  if (client.clientAuthMethod === "none") return false;
  throw new errors.InvalidRequest("client is not authorized to revoke the presented token");
}
