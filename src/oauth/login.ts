/**
 * The one human step, done right: discover, choose a scope and a client identity, run the
 * chosen flow, and build a complete ConnectorRecord. Everything the token manager later needs
 * unattended (metadata, registration, tokens) is in that record. Saving it is the manager's
 * (manager/login.ts: login = authorize + the manager's login write); this module only reads the
 * store, to reuse what an earlier login of the same connector registered.
 */
import type { Clock } from "../core/clock.js";
import { formatDuration, isoTime } from "../core/duration.js";
import { ConfigError, LoginError } from "../core/errors.js";
import {
  assertConnectorName,
  type ClientRegistration,
  type ConnectorRecord,
  type GrantKind,
  initialState,
  type TokenSet,
} from "../core/record.js";
import { isValidScope, validScope } from "../core/scope.js";
import { type Secret, scrubText } from "../core/secret.js";
import type { Store, StoredRecord } from "../store/types.js";
import { assertPkceS256, browserLogin, DEFAULT_BROWSER_TIMEOUT_MS, type FlowDeps } from "./browser-login.js";
import { privateKeyJwtClient } from "./client-auth.js";
import { probeClient } from "./client-probe.js";
import { assertDeviceFlowSupported, type DevicePrompt, deviceLogin } from "./device-login.js";
import { canonicalServerUri, type DiscoveryDeps, type DiscoveryResult, discover } from "./discovery.js";
import { type FetchLike, httpDepsOf } from "./http.js";
import {
  CALLBACK_PATH,
  type CallbackHost,
  type LoopbackListener,
  type LoopbackOptions,
  startLoopbackListener,
} from "./loopback-callback.js";
import type { AuthorizationServerMetadata } from "./metadata-schemas.js";
import {
  type LoginFlow,
  metadataDocumentClient,
  preregisteredClient,
  registerDynamicClient,
} from "./registration.js";
import { clientCredentialsGrant, type GrantOutcome } from "./token-endpoint.js";
import { mergeScopes } from "./www-authenticate.js";

export interface LoginRequest {
  mcpUrl: string;
  /** Connector name (default: derived from the server's host). */
  name?: string;
  /**
   * The flow. Absent: the existing connector's grant when logging in again (a device or machine
   * connector stays one), else the browser flow.
   */
  flow?: LoginFlow;
  /** Overrides the scope discovery would choose. */
  scope?: string;
  clientId?: string;
  clientSecret?: Secret;
  /** With clientId: authenticate with private_key_jwt (RFC 7523), the key from this PEM file. */
  privateKeyFile?: string;
  /** A Client ID Metadata Document URL to use as client_id. */
  clientMetadataUrl?: string;
  /** Which of the listed authorization servers to use. */
  authorizationServer?: string;
  /** Fixed loopback port for the browser flow. */
  callbackPort?: number;
  /** The redirect URI's host ("127.0.0.1" or "localhost"); the listener binds 127.0.0.1 either way. */
  callbackHost?: CallbackHost;
  /** The redirect URI's path (default /callback; mcp-remote's clients use /oauth/callback). */
  callbackPath?: string;
  /** How long to wait for the person (browser callback or device approval). Default 5 minutes. */
  timeoutMs?: number;
}

export interface LoginDeps {
  store: Store;
  clock: Clock;
  fetch?: FetchLike;
  signal?: AbortSignal;
  /** Per-request HTTP timeout. */
  requestTimeoutMs?: number;
  /** Shows the authorization URL (always printed; opened when possible). */
  presentUrl: (url: string) => Promise<void> | void;
  /** Shows the device flow's user code and verification URI. */
  presentDeviceCode: (prompt: DevicePrompt) => Promise<void> | void;
  /** Progress notes for the person (never secrets). */
  note?: (line: string) => void;
  /** For tests: how the loopback listener is started. */
  startListener?: (options: LoopbackOptions) => Promise<LoopbackListener>;
}

export interface LoginSummary {
  connector: string;
  server: string;
  resource: string;
  issuer: string;
  grant: GrantKind;
  clientKind: ClientRegistration["kind"];
  clientId: string;
  scopeRequested: string | null;
  scopeGranted: string | null;
  /** Access-token lifetime as issued (ms), null when the server gave none. */
  accessTokenLifetimeMs: number | null;
  accessTokenExpiresAt: number | null;
  refreshTokenIssued: boolean;
  /** Whether refresh tokens rotate: unknown (null) until the first refresh shows it. */
  refreshTokenRotates: boolean | null;
  refreshTokenExpiresAt: number | null;
  /** When a human must log in again (epoch ms), null when never (refresh or client credentials). */
  humanNeededAt: number | null;
  replacedExisting: boolean;
  warnings: string[];
}

export interface LoginResult {
  record: ConnectorRecord;
  version: number;
  summary: LoginSummary;
  discovery: DiscoveryResult;
}

/** What a human authorized, not yet saved. */
export interface Authorization {
  /** The complete record the login built (tokens, client, server). */
  record: ConnectorRecord;
  /** The stored version the login started from; null when the connector was new. */
  expectedVersion: number | null;
  replacedExisting: boolean;
  discovery: DiscoveryResult;
}

/** A connector name from the server URL: its host, plus the port when there is one. */
export function defaultConnectorName(mcpUrl: string): string {
  const u = new URL(mcpUrl);
  const base = `${u.hostname.replace(/^\[|\]$/g, "")}${u.port ? `-${u.port}` : ""}`;
  const name = base
    .replace(/[^a-zA-Z0-9._-]+/g, "-")
    .replace(/\.\.+/g, ".")
    .replace(/^[^a-zA-Z0-9]+/, "")
    .slice(0, 64);
  return name || "mcp";
}

/**
 * The MCP authorization spec's scope selection (2025-11-25, "Scope Selection Strategy"): the
 * challenge's `scope`, else the protected resource's `scopes_supported`, else none — unless
 * the user said. `offline_access` is added for interactive flows when the authorization server
 * advertises it, since a refresh token is the whole point of an unattended connector.
 */
export function chooseScope(
  discovery: Pick<DiscoveryResult, "challenge" | "protectedResource" | "authorizationServer" | "mcpUrl">,
  flow: LoginFlow,
  userScope?: string,
): string | undefined {
  // The chosen scope is sent, stored, and printed in commands people paste into a shell:
  // whichever source it comes from must be a valid RFC 6749 §3.3 scope.
  const supported = discovery.protectedResource.metadata.scopes_supported;
  let base: string | undefined;
  if (userScope?.trim()) {
    if (!isValidScope(userScope))
      throw new ConfigError(
        `--scope "${scrubText(userScope, 100)}" is not a valid OAuth scope: space-separated tokens of printable ASCII other than '"' and '\\' (RFC 6749 §3.3)`,
      );
    base = userScope;
  } else if (discovery.challenge.scope) {
    base = validScope(discovery.challenge.scope, `the WWW-Authenticate challenge of ${discovery.mcpUrl}`);
  } else if (supported?.length) {
    base = validScope(
      supported.join(" "),
      `scopes_supported in the protected resource metadata ${discovery.protectedResource.url ?? ""}`.trim(),
    );
  }
  const offline =
    flow !== "client_credentials" &&
    discovery.authorizationServer.metadata.scopes_supported?.includes("offline_access");
  if (flow === "client_credentials") {
    // No refresh tokens in this grant (RFC 6749 §4.4.3); offline_access would only be refused.
    return mergeScopes(...(base ?? "").split(" ").filter((s) => s !== "offline_access"));
  }
  return mergeScopes(base, offline ? "offline_access" : undefined);
}

export interface LoopbackTarget {
  host: CallbackHost;
  /** 0: any port. */
  port: number;
  path: string;
}

/**
 * The loopback redirect a registration allows: its host, port (0 = any) and path. Only
 * 127.0.0.1 and localhost qualify, since the listener binds 127.0.0.1 whatever the URI says.
 */
export function loopbackTarget(redirectUris: string[] | undefined): LoopbackTarget | undefined {
  for (const uri of redirectUris ?? []) {
    if (!URL.canParse(uri)) continue;
    const u = new URL(uri);
    if (u.protocol === "http:" && (u.hostname === "127.0.0.1" || u.hostname === "localhost") && !u.search)
      return { host: u.hostname as CallbackHost, port: u.port ? Number(u.port) : 0, path: u.pathname || "/" };
  }
  return undefined;
}

/**
 * Ports browsers refuse to connect to (the Fetch standard's "bad port" list): a redirect to one
 * of them can never reach the listener, so a registration naming one does not fit.
 */
const BROWSER_BLOCKED_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104,
  109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515,
  526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049,
  3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/**
 * Whether an earlier dynamic registration still fits this login, so that logging in again does
 * not register a new client every time: same issuer, same flow, a public client for the
 * interactive flows (a secret for client credentials), and for the browser flow a loopback
 * redirect URI that matches the host and path asked for. Pure.
 */
export function dynamicClientFits(
  previous: ConnectorRecord,
  issuer: string,
  flow: LoginFlow,
  callback: { host?: CallbackHost; path?: string; port?: number },
): boolean {
  const client = previous.client;
  if (client.kind !== "dynamic" || previous.server.issuer !== issuer) return false;
  if (previous.grant !== grantFor(flow)) return false;
  if (flow === "client_credentials") return client.clientSecret !== undefined;
  if (client.tokenEndpointAuthMethod !== "none" && !client.clientSecret) return false;
  if (flow === "device") return true;
  const target = loopbackTarget(client.redirectUris);
  if (!target || BROWSER_BLOCKED_PORTS.has(target.port)) return false;
  if (callback.host !== undefined && callback.host !== target.host) return false;
  if (callback.path !== undefined && callback.path !== target.path) return false;
  // An explicit port (0: any) other than the registered one needs a redirect URI of its own.
  if (callback.port !== undefined && callback.port !== 0 && callback.port !== target.port) return false;
  return true;
}

function checkFlowSupported(flow: LoginFlow, metadata: AuthorizationServerMetadata): void {
  if (!metadata.token_endpoint) {
    throw new LoginError(`the authorization server ${metadata.issuer} has no token_endpoint`, {
      problem: "invalid_metadata",
      field: "token_endpoint",
    });
  }
  if (flow === "browser") assertPkceS256(metadata);
  if (flow === "device") assertDeviceFlowSupported(metadata);
  if (
    flow === "client_credentials" &&
    metadata.grant_types_supported &&
    !metadata.grant_types_supported.includes("client_credentials")
  ) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} does not offer the client_credentials grant (grant_types_supported: ${metadata.grant_types_supported.join(", ")}); log in without --client-credentials`,
      { problem: "client_credentials_unsupported" },
    );
  }
}

function flowFor(grant: GrantKind): LoginFlow {
  return grant === "authorization_code"
    ? "browser"
    : grant === "device_code"
      ? "device"
      : "client_credentials";
}

function grantFor(flow: LoginFlow): GrantKind {
  return flow === "browser" ? "authorization_code" : flow === "device" ? "device_code" : "client_credentials";
}

/** Runs the login up to a complete record, and writes nothing (manager/login.ts saves it). */
export async function authorize(request: LoginRequest, deps: LoginDeps): Promise<Authorization> {
  const mcpUrl = canonicalServerUri(request.mcpUrl);
  const name = request.name ?? defaultConnectorName(mcpUrl);
  assertConnectorName(name);
  if (request.clientId && request.clientMetadataUrl) {
    throw new ConfigError(
      "--client-id and --client-metadata-url name two different client identities; give one",
    );
  }
  const existing: StoredRecord | null = await deps.store.get(name);
  if (existing && existing.record.server.mcpUrl !== mcpUrl) {
    throw new ConfigError(
      `connector "${name}" already exists for ${existing.record.server.mcpUrl}; choose another --name, or run \`tokenkeeper logout ${name}\` first`,
      { connector: name },
    );
  }
  const flow: LoginFlow = request.flow ?? (existing ? flowFor(existing.record.grant) : "browser");
  if (flow === "client_credentials" && request.clientId && !request.clientSecret && !request.privateKeyFile) {
    throw new ConfigError(
      "--client-credentials with --client-id needs the client's secret (set it in the environment variable named by --client-secret-env)",
    );
  }

  const discoveryDeps: DiscoveryDeps = {
    ...httpDepsOf(deps),
    ...(deps.signal ? { signal: deps.signal } : {}),
  };
  const discovery = await discover(
    mcpUrl,
    discoveryDeps,
    request.authorizationServer ? { authorizationServer: request.authorizationServer } : {},
  );
  const metadata = discovery.authorizationServer.metadata;
  const issuer = discovery.authorizationServer.issuer;
  deps.note?.(`Authorization server: ${issuer}`);
  checkFlowSupported(flow, metadata);
  const scope = chooseScope(discovery, flow, request.scope);

  // A stable identity (pre-registered, metadata document) from an earlier login is kept when the
  // user names none; so is a dynamic registration that still fits (checked with the server below).
  const previous = existing?.record;
  const reusable =
    !request.clientId &&
    !request.clientMetadataUrl &&
    previous &&
    previous.server.issuer === issuer &&
    previous.client.kind !== "dynamic" &&
    (flow !== "client_credentials" ||
      previous.client.clientSecret !== undefined ||
      previous.client.privateKeyFile !== undefined)
      ? previous.client
      : undefined;

  let listener: LoopbackListener | undefined;
  try {
    // Undefined until known: a dynamic registration needs the listener's redirect URI first.
    let client: ClientRegistration | undefined;
    if (request.clientId && request.privateKeyFile) {
      client = await privateKeyJwtClient(request.clientId, request.privateKeyFile, metadata);
    } else if (request.clientId) {
      client = preregisteredClient(
        {
          clientId: request.clientId,
          ...(request.clientSecret ? { clientSecret: request.clientSecret } : {}),
        },
        metadata,
      );
    } else if (request.clientMetadataUrl) {
      client = (await metadataDocumentClient(request.clientMetadataUrl, metadata, discoveryDeps)).client;
    } else if (reusable) {
      client = reusable;
      deps.note?.(
        `Reusing the ${reusable.kind === "preregistered" ? "pre-registered" : "metadata-document"} client ${reusable.clientId}`,
      );
    }
    const callbackWish = {
      ...(request.callbackHost ? { host: request.callbackHost } : {}),
      ...(request.callbackPath ? { path: request.callbackPath } : {}),
      ...(request.callbackPort !== undefined ? { port: request.callbackPort } : {}),
    };
    // Listener first for a reused dynamic client: its registered port must be free, else a new
    // registration on another port is the way on.
    let dynamicReuse: ClientRegistration | undefined;
    if (
      !client &&
      !request.clientId &&
      !request.clientMetadataUrl &&
      previous &&
      dynamicClientFits(previous, issuer, flow, callbackWish)
    ) {
      dynamicReuse = previous.client;
    }
    const start = deps.startListener ?? startLoopbackListener;
    if (flow === "browser" && dynamicReuse) {
      const target = loopbackTarget(dynamicReuse.redirectUris)!;
      try {
        listener = await start({
          host: target.host,
          port: target.port,
          path: target.path,
        });
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        deps.note?.(`The registered callback port ${target.port} is busy; registering a new client`);
        dynamicReuse = undefined;
      }
    }
    if (dynamicReuse) {
      const probeRecord: ConnectorRecord = {
        ...previous!,
        server: { ...previous!.server, metadata },
        client: dynamicReuse,
      };
      const verdict = await probeClient(probeRecord, httpDepsOf(deps));
      if (verdict === "registered") {
        client = dynamicReuse;
        deps.note?.(`Reusing the registered client ${dynamicReuse.clientId}`);
      } else {
        deps.note?.(
          `The authorization server no longer knows client ${dynamicReuse.clientId} (invalid_client); registering a new one`,
        );
        await listener?.close();
        listener = undefined;
      }
    }

    if (flow === "browser" && !listener) {
      const target = request.callbackPort !== undefined ? undefined : loopbackTarget(client?.redirectUris);
      if (client?.kind === "metadata_document" && !target && request.callbackPort === undefined) {
        throw new LoginError(
          `the client metadata document ${client.clientId} lists no http://127.0.0.1 redirect URI for Tokenkeeper's loopback listener`,
          {
            problem: "cimd_no_loopback_redirect",
          },
        );
      }
      listener = await start({
        host: request.callbackHost ?? target?.host ?? "127.0.0.1",
        port: request.callbackPort ?? target?.port ?? 0,
        path: request.callbackPath ?? target?.path ?? CALLBACK_PATH,
      });
      // A redirect the user fixed for a pre-registered client is what the provider knows:
      // remember it, so logging in again uses it without the flags.
      if (
        client?.kind === "preregistered" &&
        (request.callbackPort !== undefined || request.callbackHost || request.callbackPath)
      ) {
        client = { ...client, redirectUris: [listener.redirectUri] };
      }
    }

    if (!client) {
      client = await registerDynamicClient(
        metadata,
        {
          flow,
          ...(listener ? { redirectUri: listener.redirectUri } : {}),
          ...(scope ? { scope } : {}),
        },
        discoveryDeps,
      );
      deps.note?.(`Registered client ${client.clientId} (dynamic client registration)`);
    }
    if (flow === "client_credentials" && !client.clientSecret && !client.privateKeyFile) {
      throw new LoginError(
        "the client credentials grant needs a confidential client; give --client-id with its secret",
        {
          problem: "client_secret_required",
        },
      );
    }

    const now = deps.clock.now();
    const draft: ConnectorRecord = {
      schema: 1,
      name,
      grant: grantFor(flow),
      ...(scope ? { scope } : {}),
      server: {
        mcpUrl,
        resource: discovery.resource,
        issuer,
        metadata,
        ...(discovery.legacy ? {} : { resourceMetadataUrl: discovery.protectedResource.url }),
      },
      client,
      tokens: null,
      state: initialState(),
      settings: previous?.settings ?? {},
      createdAt: previous?.createdAt ?? now,
      updatedAt: now,
    };

    const flowDeps: FlowDeps = {
      clock: deps.clock,
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
      ...(deps.requestTimeoutMs ? { requestTimeoutMs: deps.requestTimeoutMs } : {}),
    };
    const timeoutMs = request.timeoutMs ?? DEFAULT_BROWSER_TIMEOUT_MS;
    let outcome: GrantOutcome;
    if (flow === "browser") {
      outcome = await browserLogin(
        { record: draft, listener: listener!, present: deps.presentUrl, timeoutMs },
        flowDeps,
      );
    } else if (flow === "device") {
      outcome = await deviceLogin({ record: draft, present: deps.presentDeviceCode, timeoutMs }, flowDeps);
    } else {
      outcome = await clientCredentialsGrant(draft, httpDepsOf(deps));
    }

    const receivedAt = outcome.tokens.obtainedAt;
    const record: ConnectorRecord = {
      ...draft,
      tokens: outcome.tokens,
      state: {
        ...initialState(),
        // Counters are history, not health: keep them across a re-login.
        refreshCount: previous?.state.refreshCount ?? 0,
        rotationCount: previous?.state.rotationCount ?? 0,
        ...(outcome.skewMs !== undefined
          ? { clockSkewMs: outcome.skewMs, clockSkewMeasuredAt: receivedAt }
          : {}),
      },
      updatedAt: deps.clock.now(),
    };
    return {
      record,
      expectedVersion: existing?.version ?? null,
      replacedExisting: Boolean(existing),
      discovery,
    };
  } finally {
    await listener?.close();
  }
}

export function summarize(record: ConnectorRecord, replacedExisting: boolean): LoginSummary {
  const t = record.tokens as TokenSet;
  const lifetime = t.expiresAt === null ? null : Math.max(0, t.expiresAt - t.obtainedAt);
  const refresh = Boolean(t.refreshToken);
  const warnings: string[] = [];
  let humanNeededAt: number | null = null;
  if (record.grant === "client_credentials") {
    // New tokens come from the client credentials: no human, ever (until the secret expires).
    const exp = record.client.clientSecretExpiresAt;
    if (exp) {
      humanNeededAt = exp * 1000;
      warnings.push(
        `the client secret expires at ${isoTime(exp * 1000) ?? `epoch second ${exp}`}; a new one will be needed then`,
      );
    }
  } else if (!refresh) {
    humanNeededAt = t.expiresAt;
    warnings.push(
      t.expiresAt === null
        ? "NO REFRESH TOKEN was issued and the server gave no token lifetime: a human must log in again as soon as the server rejects the token"
        : `NO REFRESH TOKEN was issued: a human must log in again in ${formatDuration(t.expiresAt - t.obtainedAt)}, when the access token expires (at ${isoTime(t.expiresAt)})`,
    );
  } else if (t.refreshTokenExpiresAt) {
    humanNeededAt = t.refreshTokenExpiresAt;
  }
  const requested = record.scope?.split(" ") ?? [];
  const granted = t.scope?.split(" ") ?? requested;
  // offline_access is a request for a refresh token; whether one came is reported above.
  const missing = requested.filter((s) => s !== "offline_access" && !granted.includes(s));
  if (missing.length > 0) warnings.push(`the server did not grant: ${missing.join(" ")}`);
  return {
    connector: record.name,
    server: record.server.mcpUrl,
    resource: record.server.resource,
    issuer: record.server.issuer,
    grant: record.grant,
    clientKind: record.client.kind,
    clientId: record.client.clientId,
    scopeRequested: record.scope ?? null,
    scopeGranted: t.scope ?? null,
    accessTokenLifetimeMs: lifetime,
    accessTokenExpiresAt: t.expiresAt,
    refreshTokenIssued: refresh,
    refreshTokenRotates: null,
    refreshTokenExpiresAt: t.refreshTokenExpiresAt ?? null,
    humanNeededAt,
    replacedExisting,
    warnings,
  };
}
