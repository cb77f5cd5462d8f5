/**
 * The MCP SDK's OAuthClientProvider, backed by Tokenkeeper: an SDK client (Streamable HTTP or
 * SSE transport) gets Tokenkeeper's tokens and saves through Tokenkeeper's store.
 *
 * How the SDK uses a provider (client/auth.js, client/streamableHttp.js, client/sse.js):
 *   - before every request the transport calls tokens() and sends `access_token` as the bearer;
 *   - on a 401 it runs auth(): discoveryState() → clientInformation() → tokens(); with a
 *     `refresh_token` it refreshes by itself and calls saveTokens(); without one it builds an
 *     authorization URL and calls redirectToAuthorization().
 *
 * Tokenkeeper keeps the refresh token to itself on purpose: an SDK refreshing on its own would be
 * a second refresher outside the store's lock, and a rotated refresh token presented twice makes
 * many servers revoke the whole grant (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2). So:
 *   - tokens() returns an access token fresh by Tokenkeeper's policy, `expires_in` from expiresAt;
 *   - a 401 lands in redirectToAuthorization(); unattended, that asks the manager for a token
 *     newer than the rejected one (single-flight, rotation-safe) and then throws — ReauthRequiredError
 *     when a human is needed (never a browser), TransientError("retry") when the new token is ready;
 *   - invalidateCredentials("tokens") means "that token was refused": refresh, never delete a grant.
 * For calls that must not fail on such a 401, pass tokenkeeperTransportOptions()'s `fetch` too:
 * it refreshes and retries once below the transport (createAuthFetch).
 */
import type { OAuthClientProvider, OAuthDiscoveryState } from "@modelcontextprotocol/sdk/client/auth.js";
import type {
  AuthorizationServerMetadata,
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import { NotFoundError, ReauthRequiredError, TransientError } from "../core/errors.js";
import type { ClientRegistration, ConnectorRecord } from "../core/record.js";
import { Secret } from "../core/secret.js";
import type { TokenManager } from "../manager/token-manager.js";
import { reauthAction } from "../manager/transitions.js";
import type { FetchLike } from "../oauth/http.js";
import { tokenSetFromResponse } from "../oauth/token-response.js";
import { createAuthFetch } from "./auth-fetch.js";

export interface SdkProviderOptions {
  /**
   * "unattended" (default): never opens a browser; when a human is needed the SDK call fails at
   * once with ReauthRequiredError. "interactive": redirectToAuthorization calls `onRedirect`.
   */
  mode?: "unattended" | "interactive";
  /** Interactive mode: show or open the authorization URL. */
  onRedirect?: (authorizationUrl: URL) => void | Promise<void>;
  /** Each token handed to the SDK stays valid at least this long (default 0: refresh-ahead applies). */
  minTtlMs?: number;
  /** Where an interactive login returns (default: the connector's registered redirect URI). */
  redirectUrl?: string;
}

/** A redirect URI for unattended mode, which never completes an authorization. */
const UNATTENDED_REDIRECT = "http://127.0.0.1/tokenkeeper-unattended";

export class TokenkeeperOAuthProvider implements OAuthClientProvider {
  readonly manager: TokenManager;
  readonly connector: string;
  readonly #options: SdkProviderOptions;
  /** The last access token handed to the SDK: the one a 401 refers to. */
  #lastHanded: Secret | undefined;
  /** A token obtained because a previous one was refused: if it is refused too, no refresh will help. */
  #renewedAfterRejection: Secret | undefined;
  #codeVerifier: string | undefined;
  /** A client registered during an interactive login, committed together with its tokens. */
  #pendingClient: ClientRegistration | undefined;

  constructor(manager: TokenManager, connector: string, options: SdkProviderOptions = {}) {
    this.manager = manager;
    this.connector = connector;
    this.#options = options;
  }

  /**
   * Synchronous on purpose: the SDK reads `redirectUrl` and `clientMetadata` as plain
   * properties, so they can only use what the manager already holds (the async methods,
   * tokens() and clientInformation(), load the record first; before that the defaults apply).
   */
  get #record(): ConnectorRecord | undefined {
    return this.manager.lastSeen(this.connector);
  }

  get redirectUrl(): string {
    // Always a value: without one the SDK would run a client-credentials style token request of
    // its own instead of calling redirectToAuthorization, where Tokenkeeper decides.
    return this.#options.redirectUrl ?? this.#record?.client.redirectUris?.[0] ?? UNATTENDED_REDIRECT;
  }

  get clientMetadata(): OAuthClientMetadata {
    const r = this.#record;
    return {
      redirect_uris: [this.redirectUrl],
      client_name: "tokenkeeper",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: r?.client.tokenEndpointAuthMethod ?? "none",
      ...(r?.scope ? { scope: r.scope } : {}),
    };
  }

  async clientInformation(): Promise<OAuthClientInformationMixed | undefined> {
    const r = await this.#load();
    const c = this.#pendingClient ?? r.client;
    return {
      client_id: c.clientId,
      ...(c.clientSecret ? { client_secret: c.clientSecret.reveal() } : {}),
      ...(c.clientSecretExpiresAt !== undefined ? { client_secret_expires_at: c.clientSecretExpiresAt } : {}),
      // Stamped with the issuer discoveryState() names, so the SDK presents it to no other server.
      issuer: r.server.issuer,
    } as OAuthClientInformationMixed;
  }

  async saveClientInformation(info: OAuthClientInformationMixed): Promise<void> {
    const r = await this.#load();
    if (info.client_id === r.client.clientId) return;
    // A new registration only makes sense with the login that follows it: held until saveTokens.
    this.#pendingClient = {
      kind: "dynamic",
      clientId: info.client_id,
      ...(info.client_secret ? { clientSecret: new Secret(info.client_secret) } : {}),
      tokenEndpointAuthMethod: info.client_secret ? "client_secret_basic" : "none",
      redirectUris: [this.redirectUrl],
      ...(info.client_secret_expires_at !== undefined
        ? { clientSecretExpiresAt: info.client_secret_expires_at }
        : {}),
    };
  }

  /** The SDK's discovery, answered from the record: no network round trips on a 401. */
  async discoveryState(): Promise<OAuthDiscoveryState> {
    const r = await this.#load();
    return {
      authorizationServerUrl: r.server.issuer,
      authorizationServerMetadata: r.server.metadata as unknown as AuthorizationServerMetadata,
      ...(r.server.resourceMetadataUrl ? { resourceMetadataUrl: r.server.resourceMetadataUrl } : {}),
    };
  }

  async saveDiscoveryState(): Promise<void> {
    // Discovery results belong to the login that stored the record; nothing to keep from here.
  }

  /** An access token fresh by Tokenkeeper's policy. Throws ReauthRequiredError when a human is needed. */
  async tokens(): Promise<OAuthTokens> {
    const token = await this.manager.getAccessToken(
      this.connector,
      this.#options.minTtlMs ? { minTtlMs: this.#options.minTtlMs } : {},
    );
    this.#lastHanded = token.token;
    const now = this.manager.clock.now();
    const issuer = this.#record?.server.issuer;
    return {
      access_token: token.token.reveal(),
      token_type: token.tokenType,
      ...(token.expiresAt !== null
        ? { expires_in: Math.max(0, Math.floor((token.expiresAt - now) / 1000)) }
        : {}),
      ...(token.scope !== undefined ? { scope: token.scope } : {}),
      ...(issuer ? { issuer } : {}),
    };
  }

  /**
   * Tokens the SDK obtained itself (an interactive login's code exchange). Persisted with
   * compare-and-set on top of whatever the store holds now; a response without a refresh token
   * keeps the current one (RFC 6749 §6), and a changed refresh token counts as a rotation.
   */
  async saveTokens(tokens: OAuthTokens): Promise<void> {
    const pending = this.#pendingClient;
    const now = this.manager.clock.now();
    await this.manager.saveLogin(this.connector, (current) => {
      const newClient = pending && pending.clientId !== current.client.clientId;
      // Tokens of a new client never inherit the old client's refresh token.
      const previous = newClient ? null : current.tokens;
      const { tokens: next, rotated } = tokenSetFromResponse({
        response: tokens,
        receivedAt: now,
        previous,
        // The SDK measured no skew: use the last measurement, so the expiry means the same everywhere.
        ...(current.state.clockSkewMs !== undefined ? { skewMs: current.state.clockSkewMs } : {}),
        ...(current.settings.refreshTokenLifetimeMs !== undefined
          ? { refreshTokenLifetimeMs: current.settings.refreshTokenLifetimeMs }
          : {}),
        ...(current.scope !== undefined ? { requestedScope: current.scope } : {}),
      });
      return { tokens: next, rotated, ...(newClient ? { client: pending } : {}) };
    });
    this.#pendingClient = undefined;
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    if (this.#options.mode === "interactive") {
      if (!this.#options.onRedirect)
        throw new TransientError("interactive mode needs onRedirect to show the authorization URL", {
          connector: this.connector,
        });
      await this.#options.onRedirect(authorizationUrl);
      return;
    }
    // Unattended: the resource server refused our token. One bounded attempt at a newer token,
    // then a typed verdict. Never a browser, never a wait for a human.
    throw await this.#afterRejection();
  }

  async saveCodeVerifier(codeVerifier: string): Promise<void> {
    this.#codeVerifier = codeVerifier;
  }

  async codeVerifier(): Promise<string> {
    if (!this.#codeVerifier)
      throw new TransientError("no authorization in progress (no PKCE code verifier)", {
        connector: this.connector,
      });
    return this.#codeVerifier;
  }

  /**
   * Called by the SDK when the server says credentials are no longer valid. "tokens" means the
   * access token was refused: ask for a newer one (the grant is a human's login, never deleted
   * here). A registration or grant is never thrown away from an unattended process either.
   */
  async invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery"): Promise<void> {
    if (scope === "verifier" || scope === "all") this.#codeVerifier = undefined;
    if (scope === "tokens" || scope === "all") {
      const rejected = this.#lastHanded;
      if (rejected)
        this.#renewedAfterRejection = (
          await this.manager.refreshAfterRejection(this.connector, rejected)
        ).token;
    }
  }

  async #afterRejection(): Promise<Error> {
    const rejected = this.#lastHanded;
    if (!rejected) {
      const r = await this.#load();
      return new ReauthRequiredError({
        connector: this.connector,
        reason: "not_authorized",
        since: this.manager.clock.now(),
        action: reauthAction(this.connector, r.server.mcpUrl, r.grant, r.scope),
      });
    }
    // A token we fetched because the previous one was refused is refused too: the grant no longer
    // covers this resource. Recording that stops every process from trying again and again.
    if (this.#renewedAfterRejection?.equals(rejected)) {
      return this.manager.markReauthRequired(this.connector, "token_rejected", {
        serverError: "invalid_token",
      });
    }
    try {
      const renewed = await this.manager.refreshAfterRejection(this.connector, rejected);
      this.#renewedAfterRejection = renewed.token;
      return new TransientError(
        `the MCP server refused the access token of "${this.connector}"; a new one is ready: retry the call`,
        {
          connector: this.connector,
          status: 401,
        },
      );
    } catch (error) {
      return error instanceof Error
        ? error
        : new TransientError(String(error), { connector: this.connector });
    }
  }

  async #load(): Promise<ConnectorRecord> {
    const cached = this.#record;
    if (cached) return cached;
    return this.manager.record(this.connector);
  }
}

export function createSdkAuthProvider(
  manager: TokenManager,
  connector: string,
  options: SdkProviderOptions = {},
): TokenkeeperOAuthProvider {
  return new TokenkeeperOAuthProvider(manager, connector, options);
}

/**
 * Options for StreamableHTTPClientTransport / SSEClientTransport: the provider, plus a fetch that
 * handles a refused token below the transport (refresh once, retry once) so the call succeeds.
 * The fetch adds the bearer only to requests for the connector's MCP server origin: the SDK uses
 * the same fetch for authorization-server requests, which must never see the access token.
 */
export function tokenkeeperTransportOptions(
  manager: TokenManager,
  connector: string,
  options: SdkProviderOptions & { fetch?: FetchLike } = {},
): { authProvider: TokenkeeperOAuthProvider; fetch: FetchLike } {
  const base: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const authed = createAuthFetch(manager, connector, {
    fetch: base,
    ...(options.minTtlMs !== undefined ? { minTtlMs: options.minTtlMs } : {}),
  });
  const fetch: FetchLike = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const record = await manager.record(connector).catch((e: unknown) => {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    });
    if (record && url.origin === new URL(record.server.mcpUrl).origin) return authed(input, init);
    return base(input, init);
  };
  return { authProvider: createSdkAuthProvider(manager, connector, options), fetch };
}
