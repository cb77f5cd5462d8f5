/**
 * The connector record: everything Tokenkeeper knows about one authorization, as state.
 * In memory, credentials are Secrets; the codec below is the only place that turns them
 * into plain strings, for a store to persist (and a network store to seal).
 */
import { ConfigError, StoreCorruptError } from "./errors.js";
import { Secret } from "./secret.js";
import {
  arrayOf,
  type Infer,
  literal,
  nullable,
  number,
  object,
  oneOf,
  optional,
  recordOf,
  ShapeError,
  string,
  withDefault,
} from "./shape.js";

export type GrantKind = "authorization_code" | "device_code" | "client_credentials";
export type ClientKind = "dynamic" | "preregistered" | "metadata_document";
export type TokenEndpointAuthMethod =
  | "none"
  | "client_secret_basic"
  | "client_secret_post"
  | "private_key_jwt";
export type Health = "ok" | "degraded" | "reauth_required";

export interface TokenSet {
  accessToken: Secret;
  /** "Bearer" (compared case-insensitively, RFC 6749 §7.1). */
  tokenType: string;
  refreshToken?: Secret;
  /** Scope granted, as the server reported it (or as requested when it did not say, RFC 6749 §5.1). */
  scope?: string;
  /**
   * Absolute expiry in epoch ms by this machine's clock, computed once, the instant the response
   * arrived, and already corrected for clock skew (see effectiveExpiry in oauth/token-response.ts):
   * every decision uses this value. `null` means the server gave no lifetime: we do not invent
   * one, and rely on a 401.
   */
  expiresAt: number | null;
  /**
   * The expiry the server stated (`expires_in` from arrival), when the clock-skew correction
   * made `expiresAt` earlier. For display only.
   */
  grantedExpiresAt?: number;
  /** When this token set arrived (epoch ms, local clock). */
  obtainedAt: number;
  /** When the current refresh token was issued (it changes on rotation). */
  refreshTokenIssuedAt?: number;
  /** The refresh token's known absolute expiry, when the server or the user told us. */
  refreshTokenExpiresAt?: number | null;
}

export interface ClientRegistration {
  kind: ClientKind;
  clientId: string;
  clientSecret?: Secret;
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  /**
   * private_key_jwt (RFC 7523 §2.2): the PEM file holding the client's private key. The key
   * itself never enters the store: the file stays where its owner keeps (and rotates) it.
   */
  privateKeyFile?: string;
  redirectUris?: string[];
  /** RFC 7591 §3.2.1: 0 means never. */
  clientSecretExpiresAt?: number;
  registrationAccessToken?: Secret;
  registrationClientUri?: string;
}

export interface ServerInfo {
  /** The MCP endpoint as the user gave it (normalized). */
  mcpUrl: string;
  /** The canonical resource URI (RFC 8707) sent as `resource` and expected as audience. */
  resource: string;
  issuer: string;
  /** The validated RFC 8414 metadata of the authorization server (cached so refresh needs no discovery). */
  metadata: Record<string, unknown> & { issuer: string; token_endpoint?: string };
  resourceMetadataUrl?: string;
}

export interface ReauthState {
  reason: string;
  serverError?: string;
  serverErrorDescription?: string;
  since: number;
  action: string;
  requiredScope?: string;
}

export interface ConnectorState {
  health: Health;
  lastRefreshAt?: number;
  lastRefreshOutcome?: "ok" | "transient_error" | "reauth_required";
  lastError?: { code: string; error?: string; description?: string; at: number };
  refreshCount: number;
  rotationCount: number;
  /** Server clock minus local clock, ms (positive: server ahead). */
  clockSkewMs?: number;
  clockSkewMeasuredAt?: number;
  reauth?: ReauthState;
  /** Last time the reauth notification fired for the current reauth state (dedupe per transition). */
  notifiedAt?: number;
  /** Last time a refresh-token-expiry warning fired. */
  expiryWarnedAt?: number;
}

export interface ConnectorSettings {
  /** Upper bound of the refresh-ahead window (ms). */
  refreshAheadMs?: number;
  /** The refresh token's absolute lifetime from first issue, when the provider documents one (ms). */
  refreshTokenLifetimeMs?: number;
  notifyCommand?: string;
  notifyWebhook?: string;
  /** Extra headers for the MCP server (e.g. a proxy's --header). */
  headers?: Record<string, string>;
  /** How long a proxy call waits for a token before it is answered with an error (ms; --token-wait wins). */
  proxyTokenWaitMs?: number;
}

export interface ConnectorRecord {
  schema: 1;
  name: string;
  grant: GrantKind;
  /** The scope requested at login. */
  scope?: string;
  server: ServerInfo;
  client: ClientRegistration;
  tokens: TokenSet | null;
  state: ConnectorState;
  settings: ConnectorSettings;
  createdAt: number;
  updatedAt: number;
}

export function initialState(): ConnectorState {
  return { health: "ok", refreshCount: 0, rotationCount: 0 };
}

// ---- codec -------------------------------------------------------------------------------

const secretString = string({ nonEmpty: true });
const nonEmpty = string({ nonEmpty: true });
const text = string();
const epoch = number();

const tokenSetSchema = object({
  access_token: secretString,
  token_type: nonEmpty,
  refresh_token: optional(secretString),
  scope: optional(text),
  expires_at: nullable(epoch),
  granted_expires_at: optional(epoch),
  obtained_at: epoch,
  refresh_token_issued_at: optional(epoch),
  refresh_token_expires_at: optional(nullable(epoch)),
});

const clientSchema = object({
  kind: oneOf(["dynamic", "preregistered", "metadata_document"]),
  client_id: nonEmpty,
  client_secret: optional(secretString),
  token_endpoint_auth_method: oneOf(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]),
  private_key_file: optional(nonEmpty),
  redirect_uris: optional(arrayOf(text)),
  client_secret_expires_at: optional(number()),
  registration_access_token: optional(secretString),
  registration_client_uri: optional(text),
});

const stateSchema = object({
  health: oneOf(["ok", "degraded", "reauth_required"]),
  last_refresh_at: optional(epoch),
  last_refresh_outcome: optional(oneOf(["ok", "transient_error", "reauth_required"])),
  last_error: optional(object({ code: text, error: optional(text), description: optional(text), at: epoch })),
  refresh_count: number({ int: true, min: 0 }),
  rotation_count: number({ int: true, min: 0 }),
  clock_skew_ms: optional(number()),
  clock_skew_measured_at: optional(epoch),
  reauth: optional(
    object({
      reason: text,
      server_error: optional(text),
      server_error_description: optional(text),
      since: epoch,
      action: text,
      required_scope: optional(text),
    }),
  ),
  notified_at: optional(epoch),
  expiry_warned_at: optional(epoch),
});

const recordSchema = object({
  schema: literal(1),
  name: nonEmpty,
  grant: oneOf(["authorization_code", "device_code", "client_credentials"]),
  scope: optional(text),
  server: object({
    mcp_url: nonEmpty,
    resource: nonEmpty,
    issuer: nonEmpty,
    metadata: object({ issuer: text, token_endpoint: optional(text) }, { loose: true }),
    resource_metadata_url: optional(text),
  }),
  client: clientSchema,
  tokens: nullable(tokenSetSchema),
  state: stateSchema,
  settings: withDefault(
    object({
      refresh_ahead_ms: optional(number({ min: 0 })),
      refresh_token_lifetime_ms: optional(number({ above: 0 })),
      notify_command: optional(text),
      notify_webhook: optional(text),
      headers: optional(recordOf(text)),
      proxy_token_wait_ms: optional(number({ min: 0 })),
    }),
    () => ({}),
  ),
  created_at: epoch,
  updated_at: epoch,
});

export type SerializedRecord = Infer<typeof recordSchema>;

function defined<T extends Record<string, unknown>>(obj: T): T {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

/** Turns a record into its persisted JSON form. This reveals secrets: only stores call it. */
export function serializeRecord(r: ConnectorRecord): SerializedRecord {
  const t = r.tokens;
  return defined({
    schema: 1 as const,
    name: r.name,
    grant: r.grant,
    scope: r.scope,
    server: defined({
      mcp_url: r.server.mcpUrl,
      resource: r.server.resource,
      issuer: r.server.issuer,
      metadata: r.server.metadata,
      resource_metadata_url: r.server.resourceMetadataUrl,
    }),
    client: defined({
      kind: r.client.kind,
      client_id: r.client.clientId,
      client_secret: r.client.clientSecret?.reveal(),
      token_endpoint_auth_method: r.client.tokenEndpointAuthMethod,
      private_key_file: r.client.privateKeyFile,
      redirect_uris: r.client.redirectUris,
      client_secret_expires_at: r.client.clientSecretExpiresAt,
      registration_access_token: r.client.registrationAccessToken?.reveal(),
      registration_client_uri: r.client.registrationClientUri,
    }),
    tokens: t
      ? defined({
          access_token: t.accessToken.reveal(),
          token_type: t.tokenType,
          refresh_token: t.refreshToken?.reveal(),
          scope: t.scope,
          expires_at: t.expiresAt,
          granted_expires_at: t.grantedExpiresAt,
          obtained_at: t.obtainedAt,
          refresh_token_issued_at: t.refreshTokenIssuedAt,
          refresh_token_expires_at: t.refreshTokenExpiresAt,
        })
      : null,
    state: defined({
      health: r.state.health,
      last_refresh_at: r.state.lastRefreshAt,
      last_refresh_outcome: r.state.lastRefreshOutcome,
      last_error: r.state.lastError ? defined({ ...r.state.lastError }) : undefined,
      refresh_count: r.state.refreshCount,
      rotation_count: r.state.rotationCount,
      clock_skew_ms: r.state.clockSkewMs,
      clock_skew_measured_at: r.state.clockSkewMeasuredAt,
      reauth: r.state.reauth
        ? defined({
            reason: r.state.reauth.reason,
            server_error: r.state.reauth.serverError,
            server_error_description: r.state.reauth.serverErrorDescription,
            since: r.state.reauth.since,
            action: r.state.reauth.action,
            required_scope: r.state.reauth.requiredScope,
          })
        : undefined,
      notified_at: r.state.notifiedAt,
      expiry_warned_at: r.state.expiryWarnedAt,
    }),
    settings: defined({
      refresh_ahead_ms: r.settings.refreshAheadMs,
      refresh_token_lifetime_ms: r.settings.refreshTokenLifetimeMs,
      notify_command: r.settings.notifyCommand,
      notify_webhook: r.settings.notifyWebhook,
      headers: r.settings.headers,
      proxy_token_wait_ms: r.settings.proxyTokenWaitMs,
    }),
    created_at: r.createdAt,
    updated_at: r.updatedAt,
  });
}

function optSecret(v: string | undefined): Secret | undefined {
  return v === undefined ? undefined : new Secret(v);
}

/**
 * Parses a persisted record. `where` names the file or key in the error, so a corrupt entry
 * is reported with its location; the error never quotes the content (it holds secrets).
 */
export function parseRecord(data: unknown, where: string): ConnectorRecord {
  let s: SerializedRecord;
  try {
    s = recordSchema(data, "");
  } catch (error) {
    if (!(error instanceof ShapeError)) throw error;
    throw new StoreCorruptError(
      `${where} is not a valid connector record: field "${error.path}" ${error.message}`,
      {
        file: where,
        field: error.path,
      },
    );
  }
  return {
    schema: 1,
    name: s.name,
    grant: s.grant,
    ...(s.scope !== undefined ? { scope: s.scope } : {}),
    server: defined({
      mcpUrl: s.server.mcp_url,
      resource: s.server.resource,
      issuer: s.server.issuer,
      metadata: s.server.metadata,
      resourceMetadataUrl: s.server.resource_metadata_url,
    }),
    client: defined({
      kind: s.client.kind,
      clientId: s.client.client_id,
      clientSecret: optSecret(s.client.client_secret),
      tokenEndpointAuthMethod: s.client.token_endpoint_auth_method,
      privateKeyFile: s.client.private_key_file,
      redirectUris: s.client.redirect_uris,
      clientSecretExpiresAt: s.client.client_secret_expires_at,
      registrationAccessToken: optSecret(s.client.registration_access_token),
      registrationClientUri: s.client.registration_client_uri,
    }),
    tokens: s.tokens
      ? defined({
          accessToken: new Secret(s.tokens.access_token),
          tokenType: s.tokens.token_type,
          refreshToken: optSecret(s.tokens.refresh_token),
          scope: s.tokens.scope,
          expiresAt: s.tokens.expires_at,
          grantedExpiresAt: s.tokens.granted_expires_at,
          obtainedAt: s.tokens.obtained_at,
          refreshTokenIssuedAt: s.tokens.refresh_token_issued_at,
          refreshTokenExpiresAt: s.tokens.refresh_token_expires_at,
        })
      : null,
    state: defined({
      health: s.state.health,
      lastRefreshAt: s.state.last_refresh_at,
      lastRefreshOutcome: s.state.last_refresh_outcome,
      lastError: s.state.last_error ? defined({ ...s.state.last_error }) : undefined,
      refreshCount: s.state.refresh_count,
      rotationCount: s.state.rotation_count,
      clockSkewMs: s.state.clock_skew_ms,
      clockSkewMeasuredAt: s.state.clock_skew_measured_at,
      reauth: s.state.reauth
        ? defined({
            reason: s.state.reauth.reason,
            serverError: s.state.reauth.server_error,
            serverErrorDescription: s.state.reauth.server_error_description,
            since: s.state.reauth.since,
            action: s.state.reauth.action,
            requiredScope: s.state.reauth.required_scope,
          })
        : undefined,
      notifiedAt: s.state.notified_at,
      expiryWarnedAt: s.state.expiry_warned_at,
    }),
    settings: defined({
      refreshAheadMs: s.settings.refresh_ahead_ms,
      refreshTokenLifetimeMs: s.settings.refresh_token_lifetime_ms,
      notifyCommand: s.settings.notify_command,
      notifyWebhook: s.settings.notify_webhook,
      headers: s.settings.headers,
      proxyTokenWaitMs: s.settings.proxy_token_wait_ms,
    }),
    createdAt: s.created_at,
    updatedAt: s.updated_at,
  };
}

/** JSON text of a record, for stores that persist text. */
export function encodeRecord(r: ConnectorRecord): string {
  return `${JSON.stringify(serializeRecord(r), null, 2)}\n`;
}

/** Parses JSON text from a store; bad JSON is a StoreCorruptError naming `where`. */
export function decodeRecord(text: string, where: string): ConnectorRecord {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new StoreCorruptError(
      `${where} is not valid JSON (${text.length === 0 ? "empty" : "truncated or damaged"})`,
      {
        file: where,
      },
    );
  }
  return parseRecord(data, where);
}

/** Connector names are used as file names and keys: keep them boring. */
export const CONNECTOR_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export function assertConnectorName(name: string): void {
  if (!CONNECTOR_NAME.test(name) || name.includes("..")) {
    throw new ConfigError(
      `invalid connector name "${name.slice(0, 80)}": use letters, digits, '.', '_' or '-' (at most 64)`,
    );
  }
}
