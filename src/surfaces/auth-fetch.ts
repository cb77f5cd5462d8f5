/**
 * An authenticated fetch: a wrapper around fetch, not a fork of it. It injects the current
 * access token, and on a 401 invalid_token refreshes once and retries once (when the body can
 * be sent again). What it cannot fix it reports with a typed error — ReauthRequiredError when
 * a human must log in again — never a bare 401 for the caller to misread as "tool failed".
 */
import { ReauthRequiredError, TransientError } from "../core/errors.js";
import { validScope } from "../core/scope.js";
import { scrubServerText } from "../core/secret.js";
import type { AccessToken, TokenManager } from "../manager/token-manager.js";
import { reauthAction } from "../manager/transitions.js";
import { describeUrl, type FetchLike } from "../oauth/http.js";
import { mergeScopes, parseBearerChallenge } from "../oauth/www-authenticate.js";

export interface AuthFetchOptions {
  /** Each token handed out must stay valid at least this long (default 0: the refresh-ahead window already applies). */
  minTtlMs?: number;
  /** The fetch to wrap (default: global fetch). */
  fetch?: FetchLike;
  /**
   * How long a request waits for a token that needs a refresh before it fails with a transient
   * error (default: as long as the manager's retry deadline). The refresh itself goes on.
   */
  maxWaitMs?: number;
}

export function createAuthFetch(
  manager: TokenManager,
  connector: string,
  options: AuthFetchOptions = {},
): FetchLike {
  const base = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const bound = options.maxWaitMs !== undefined ? { maxWaitMs: options.maxWaitMs } : {};
  const tokenOptions = {
    ...(options.minTtlMs !== undefined ? { minTtlMs: options.minTtlMs } : {}),
    ...bound,
  };
  return async (input, init) => {
    // Work on (url, init), not Request objects: building, cloning and re-wrapping a Request
    // costs three body streams per call on Node 20 (~0.2 ms), most of what a proxy adds.
    const { url, request } = await normalize(input, init);
    // A ReadableStream body can be sent once only: it cannot be replayed after a 401.
    const replayable = !(request.body instanceof ReadableStream);

    /** A 401: refresh once (unless the store already moved on) and retry once. */
    async function handleUnauthorized(response: Response, token: AccessToken): Promise<Response> {
      const challenge = parseBearerChallenge(response.headers.get("www-authenticate"));
      await response.body?.cancel().catch(() => {});
      // RFC 6750 §3.1: invalid_token (or no error at all, for a token the server does not know).
      if (challenge?.error && challenge.error !== "invalid_token") {
        const error = serverText(challenge.error, token, 64);
        throw new TransientError(`the server rejected the request with 401 ${error}`, {
          connector,
          status: 401,
          serverError: error,
        });
      }
      const renewed = await manager.refreshAfterRejection(connector, token.token, bound);
      if (!replayable) {
        throw new TransientError(
          "the access token was renewed but the request body is a stream and cannot be sent again; retry the request",
          { connector, status: 401 },
        );
      }
      // A server that answered 401 did not process the request: sending it again is safe.
      const retried = await base(url, withToken(request, renewed));
      if (retried.status === 403 && isInsufficientScope(retried))
        return throwInsufficientScope(manager, connector, retried, renewed, url);
      if (retried.status !== 401) return retried;
      await retried.body?.cancel().catch(() => {});
      // A token fresh from the authorization server is still refused: the grant no longer
      // authorizes this resource (revoked, the audience changed, or it lacks a scope the server
      // names). Only a human can fix that; the login command then carries that scope.
      const again = parseBearerChallenge(retried.headers.get("www-authenticate"));
      const asked = again?.scope ?? challenge?.scope;
      const missing = missingScope(
        renewed.scope,
        asked !== undefined
          ? validScope(asked, `the 401 challenge (WWW-Authenticate) of ${describeUrl(url)}`)
          : undefined,
      );
      throw await manager.markReauthRequired(connector, "token_rejected", {
        ...(missing ? { requiredScope: mergeScopes(renewed.scope, missing) ?? missing } : {}),
        serverError: again?.error ? serverText(again.error, renewed, 64) : "invalid_token",
        ...(again?.errorDescription
          ? { serverErrorDescription: serverText(again.errorDescription, renewed, 300) }
          : {}),
      });
    }

    const token = await manager.getAccessToken(connector, tokenOptions);
    const response = await base(url, withToken(request, token));
    if (response.status === 403 && isInsufficientScope(response)) {
      // Step-up (MCP authorization, "Scope Challenge Handling"): a person may have run
      // `login --scope` since this token was handed out; the store then holds a token to retry with.
      const newer = replayable ? await manager.newerToken(connector, token.token) : undefined;
      if (!newer) return throwInsufficientScope(manager, connector, response, token, url);
      await response.body?.cancel().catch(() => {});
      const retried = await base(url, withToken(request, newer));
      if (retried.status === 403 && isInsufficientScope(retried))
        return throwInsufficientScope(manager, connector, retried, newer, url);
      if (retried.status !== 401) return retried;
      return handleUnauthorized(retried, newer);
    }
    if (response.status !== 401) return response;
    return handleUnauthorized(response, token);
  };
}

/** A Request input is read once (its body buffered) so that it can be sent twice. */
async function normalize(
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<{ url: string | URL; request: RequestInit }> {
  if (!(input instanceof Request)) return { url: input, request: init ?? {} };
  const body = input.body ? await input.arrayBuffer() : undefined;
  return {
    url: input.url,
    request: {
      method: input.method,
      headers: input.headers,
      signal: input.signal,
      redirect: input.redirect,
      ...(body ? { body } : {}),
      ...init,
    },
  };
}

function withToken(request: RequestInit, token: AccessToken): RequestInit {
  const headers = new Headers(request.headers);
  headers.set("authorization", `${token.tokenType} ${token.token.reveal()}`);
  return { ...request, headers };
}

/** The scopes a challenge names that a token's known scope lacks (undefined when none, or unknown). */
export function missingScope(granted: string | undefined, asked: string | undefined): string | undefined {
  if (granted === undefined || !asked) return undefined;
  const have = new Set(granted.split(" "));
  const missing = asked.split(" ").filter((s) => s && !have.has(s));
  return missing.length ? missing.join(" ") : undefined;
}

function isInsufficientScope(response: Response): boolean {
  return parseBearerChallenge(response.headers.get("www-authenticate"))?.error === "insufficient_scope";
}

/** RFC 6750 §3.1 insufficient_scope: a step-up a human must grant; the connector keeps working for other calls. */
async function throwInsufficientScope(
  manager: TokenManager,
  connector: string,
  response: Response,
  sent: AccessToken,
  url: string | URL,
): Promise<never> {
  const challenge = parseBearerChallenge(response.headers.get("www-authenticate")) ?? {};
  await response.body?.cancel().catch(() => {});
  // The scope ends up in a command line a person pastes: refuse anything RFC 6749 §3.3 does not allow.
  const required =
    challenge.scope !== undefined
      ? validScope(
          challenge.scope,
          `the insufficient_scope challenge (WWW-Authenticate) of ${describeUrl(url)}`,
        )
      : undefined;
  const view = manager.view(connector);
  const scope = mergeScopes(view?.scope, required);
  throw new ReauthRequiredError({
    connector,
    reason: "insufficient_scope",
    since: manager.clock.now(),
    action: reauthAction(connector, view?.mcpUrl ?? "<mcp-server-url>", view?.grant ?? "", scope),
    serverError: "insufficient_scope",
    ...(challenge.errorDescription
      ? { serverErrorDescription: serverText(challenge.errorDescription, sent, 300) }
      : {}),
    ...(required ? { requiredScope: required } : {}),
  });
}

/** Text from the resource server, without the access token that was sent to it (see scrubServerText). */
function serverText(text: string, sent: AccessToken, maxLength: number): string {
  return scrubServerText(text, [sent.token.reveal()], maxLength);
}
