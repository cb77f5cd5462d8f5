/**
 * Token-endpoint calls that the manager makes unattended: the refresh-token grant and the
 * client-credentials grant. oauth4webapi builds and validates; this module adds timeouts,
 * size bounds, clock-skew measurement, and turns every failure into a typed error.
 */
import * as oauth from "oauth4webapi";
import type { Clock } from "../core/clock.js";
import { ConfigError, ProtocolError, TokenkeeperError, TransientError } from "../core/errors.js";
import type { ConnectorRecord, TokenSet } from "../core/record.js";
import { scrubText } from "../core/secret.js";
import { clientSecretBasic, privateKeyJwt } from "./client-auth.js";
import {
  assertSecureUrl,
  boundedFetch,
  describeUrl,
  type FetchLike,
  isLoopbackHost,
  parseRetryAfter,
} from "./http.js";
import { SentSecrets } from "./sent-secrets.js";
import {
  estimateClockSkew,
  InvalidTokenResponseError,
  SKEW_RESOLUTION_MS,
  type TokenResponseLike,
  tokenResponseProblem,
  tokenSetFromResponse,
} from "./token-response.js";

export { InvalidTokenResponseError } from "./token-response.js";

export interface TokenEndpointDeps {
  clock: Clock;
  fetch?: FetchLike;
  timeoutMs?: number;
}

/** The OAuth error the server returned, for the manager to classify. */
export class TokenEndpointError extends TokenkeeperError {
  constructor(
    readonly status: number,
    readonly oauthError: string,
    readonly description: string | undefined,
    where: string,
  ) {
    super(
      "protocol_error",
      `${where} answered ${status} ${oauthError}${description ? `: ${scrubText(description, 200)}` : ""}`,
      {
        status,
        serverError: oauthError,
        ...(description ? { serverErrorDescription: scrubText(description, 300) } : {}),
      },
    );
  }
}

export interface GrantOutcome {
  tokens: TokenSet;
  rotated: boolean;
  /** Server minus local clock, when the response allowed measuring it. */
  skewMs?: number;
}

export function oauthClientFor(record: ConnectorRecord): {
  as: oauth.AuthorizationServer;
  client: oauth.Client;
  auth: oauth.ClientAuth;
  insecure: boolean;
} {
  const as = record.server.metadata as unknown as oauth.AuthorizationServer;
  if (!as.token_endpoint)
    throw new ProtocolError(`the authorization server ${record.server.issuer} has no token_endpoint`, {
      field: "token_endpoint",
    });
  const tokenUrl = assertSecureUrl(as.token_endpoint, "token_endpoint");
  const client: oauth.Client = {
    client_id: record.client.clientId,
    token_endpoint_auth_method: record.client.tokenEndpointAuthMethod,
  };
  // oauth4webapi dates what it signs (a private_key_jwt assertion's iat, nbf, exp) by this
  // machine's clock plus this: the server's measured clock, so a server running behind does
  // not refuse an assertion "not valid yet". Below the measurement's resolution, none.
  const skewMs = record.state.clockSkewMs;
  if (skewMs !== undefined && Math.abs(skewMs) >= SKEW_RESOLUTION_MS)
    client[oauth.clockSkew] = Math.round(skewMs / 1000);
  const secret = record.client.clientSecret?.reveal();
  let auth: oauth.ClientAuth;
  switch (record.client.tokenEndpointAuthMethod) {
    case "client_secret_basic":
      // Not oauth.ClientSecretBasic: see client-auth.ts for the encoding servers accept.
      auth = clientSecretBasic(secret ?? "");
      break;
    case "client_secret_post":
      auth = oauth.ClientSecretPost(secret ?? "");
      break;
    case "private_key_jwt":
      if (!record.client.privateKeyFile)
        throw new ConfigError(
          `connector "${record.name}" authenticates with private_key_jwt but names no key file; log in again with --private-key-file FILE`,
          { connector: record.name, field: "private_key_file" },
        );
      auth = privateKeyJwt(record.client.privateKeyFile);
      break;
    default:
      auth = oauth.None();
  }
  return { as, client, auth, insecure: tokenUrl.protocol === "http:" && isLoopbackHost(tokenUrl.hostname) };
}

/**
 * Sends one request through `send`, validates with `process`, and converts failures:
 * OAuth error bodies → TokenEndpointError; 5xx/408/429 → TransientError (with Retry-After);
 * network errors and timeouts are already TransientError from boundedFetch; any other complete
 * answer that is not a valid token response (a redirect, a 200 without an access token, an
 * unusable token type…) → InvalidTokenResponseError, a protocol error that is never retried.
 *
 * Every string the server chose is scrubbed of the credentials this request sent (recorded from
 * the request itself, so no grant can forget one), stripped of control characters and capped
 * here, before any error is built from it.
 */
export async function callTokenEndpoint(
  record: ConnectorRecord,
  deps: TokenEndpointDeps,
  send: (
    ctx: ReturnType<typeof oauthClientFor>,
    options: oauth.TokenEndpointRequestOptions,
  ) => Promise<Response>,
  process: (
    ctx: ReturnType<typeof oauthClientFor>,
    response: Response,
  ) => Promise<oauth.TokenEndpointResponse>,
  previous: TokenSet | null,
): Promise<GrantOutcome> {
  const ctx = oauthClientFor(record);
  const where = describeUrl(ctx.as.token_endpoint!);
  const http = boundedFetch({ clock: deps.clock, fetch: deps.fetch, timeoutMs: deps.timeoutMs });
  const sent = new SentSecrets().add(record.client.clientSecret?.reveal());
  const sentAt = deps.clock.now();
  const response = await send(ctx, {
    [oauth.customFetch]: (url, init) => {
      sent.noteRequest(init as RequestInit);
      return http(url, init as RequestInit);
    },
    ...(ctx.insecure ? { [oauth.allowInsecureRequests]: true } : {}),
    additionalParameters: { resource: record.server.resource },
  });
  const receivedAt = deps.clock.now();
  const dateHeader = response.headers.get("date");

  // 5xx and 429 (RFC 9110 §15.6, RFC 6585 §4), and 408 (the server did not take the request):
  // nothing was decided, asking again later is right.
  if (response.status >= 500 || response.status === 429 || response.status === 408) {
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), receivedAt);
    const body = await safeOAuthError(response.clone(), sent);
    throw new TransientError(`${where} answered ${response.status}${body?.error ? ` ${body.error}` : ""}`, {
      url: where,
      status: response.status,
      kind: "http",
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (response.status >= 300 && response.status < 400) {
    // RFC 6749 §5.1/§5.2: the token endpoint answers the request itself; following a redirect
    // would send the credentials somewhere nobody vetted (boundedFetch never follows one).
    throw new InvalidTokenResponseError(
      where,
      response.status,
      `a ${response.status} redirect${response.headers.get("location") ? ` to ${sent.scrub(describeUrl(response.headers.get("location") ?? ""), 200)}` : ""} instead of a token response (token endpoints must answer directly; the redirect was not followed)`,
    );
  }

  let result: oauth.TokenEndpointResponse;
  try {
    result = await process(ctx, response);
  } catch (cause) {
    if (cause instanceof oauth.ResponseBodyError) {
      throw new TokenEndpointError(
        cause.status,
        oauthErrorCode(cause.error, sent),
        typeof cause.error_description === "string" ? sent.scrub(cause.error_description, 300) : undefined,
        where,
      );
    }
    if (cause instanceof oauth.WWWAuthenticateChallengeError) {
      throw new TokenEndpointError(
        cause.status,
        "invalid_client",
        "WWW-Authenticate challenge from the token endpoint",
        where,
      );
    }
    // A complete answer that is not a token response (no access_token, a token_type that is not
    // a string, a negative expires_in, a body that is not JSON): the server's verdict, not a
    // transport accident. oauth4webapi's messages name the field, never its value.
    // Our own description of the body when there is one (it says what is wrong in the terms of
    // the RFCs), else oauth4webapi's message, which names the field, never its value.
    const body = (cause as { cause?: { body?: unknown } } | undefined)?.cause?.body;
    const ours =
      body && typeof body === "object" ? tokenResponseProblem(body as TokenResponseLike) : undefined;
    const detail =
      ours ??
      (cause instanceof Error
        ? sent.scrub(cause.message.replace(/^"response" body /, ""), 200)
        : "invalid response");
    throw new InvalidTokenResponseError(where, response.status, detail);
  }

  const skewMs = estimateClockSkew({ sentAt, receivedAt, dateHeader, accessToken: result.access_token });
  // A response that allowed no measurement (no Date header, opaque token) is judged by the last one.
  const expirySkewMs = skewMs ?? record.state.clockSkewMs;
  const { tokens, rotated } = tokenSetFromResponse({
    response: result as unknown as Parameters<typeof tokenSetFromResponse>[0]["response"],
    receivedAt,
    previous,
    where,
    status: response.status,
    ...(expirySkewMs !== undefined ? { skewMs: expirySkewMs } : {}),
    ...(record.settings.refreshTokenLifetimeMs !== undefined
      ? { refreshTokenLifetimeMs: record.settings.refreshTokenLifetimeMs }
      : {}),
    ...(record.scope !== undefined ? { requestedScope: record.scope } : {}),
  });
  return { tokens, rotated, ...(skewMs !== undefined ? { skewMs } : {}) };
}

/**
 * RFC 6749 §5.2: error = 1*( %x20-21 / %x23-5B / %x5D-7E ). Anything else (or anything longer
 * than a real error code) is server text, scrubbed and capped like a description.
 */
function oauthErrorCode(value: unknown, sent: SentSecrets): string {
  if (typeof value !== "string" || value === "") return "invalid_response";
  const clean = sent.scrub(value, 64);
  return /^[\x20\x21\x23-\x5B\x5D-\x7E]+$/.test(clean) ? clean : "invalid_response";
}

async function safeOAuthError(
  response: Response,
  sent: SentSecrets,
): Promise<{ error?: string } | undefined> {
  try {
    const body = (await response.json()) as { error?: unknown };
    return typeof body?.error === "string" ? { error: oauthErrorCode(body.error, sent) } : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 6749 §6: exchange the refresh token. */
export function refreshGrant(record: ConnectorRecord, deps: TokenEndpointDeps): Promise<GrantOutcome> {
  const refreshToken = record.tokens?.refreshToken;
  if (!refreshToken) throw new ProtocolError("no refresh token to use", { connector: record.name });
  return callTokenEndpoint(
    record,
    deps,
    (ctx, options) =>
      oauth.refreshTokenGrantRequest(ctx.as, ctx.client, ctx.auth, refreshToken.reveal(), options),
    (ctx, response) => oauth.processRefreshTokenResponse(ctx.as, ctx.client, response),
    record.tokens,
  );
}

/** RFC 6749 §4.4: machine-to-machine, no refresh token and no human ever. */
export function clientCredentialsGrant(
  record: ConnectorRecord,
  deps: TokenEndpointDeps,
): Promise<GrantOutcome> {
  const params: Record<string, string> = {};
  if (record.scope) params.scope = record.scope;
  return callTokenEndpoint(
    record,
    deps,
    (ctx, options) => {
      const { additionalParameters, ...rest } = options;
      return oauth.clientCredentialsGrantRequest(
        ctx.as,
        ctx.client,
        ctx.auth,
        { ...params, ...(additionalParameters as Record<string, string>) },
        rest,
      );
    },
    (ctx, response) => oauth.processClientCredentialsResponse(ctx.as, ctx.client, response),
    null,
  );
}
