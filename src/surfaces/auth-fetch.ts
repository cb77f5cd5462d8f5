/**
 * An authenticated fetch: a wrapper around fetch, not a fork of it. It injects the current
 * access token, and on a 401 invalid_token refreshes once and retries once (when the body can
 * be sent again). What it cannot fix it reports with a typed error — ReauthRequiredError when
 * a human must log in again — never a bare 401 for the caller to misread as "tool failed".
 */
import { NotFoundError, type ReauthReason, ReauthRequiredError, TransientError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { AccessToken, GetTokenOptions, TokenManager } from "../manager/token-manager.js";
import type { FetchLike } from "../oauth/http.js";
import { parseBearerChallenge } from "../oauth/www-authenticate.js";

export interface AuthFetchOptions {
  /** Each token handed out must stay valid at least this long (default 0: the refresh-ahead window already applies). */
  minTtlMs?: number;
  /** The fetch to wrap (default: global fetch). */
  fetch?: FetchLike;
}

export function createAuthFetch(
  manager: TokenManager,
  connector: string,
  options: AuthFetchOptions = {},
): FetchLike {
  const base = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  return async (input, init) => {
    const request = new Request(input, init);
    // Keep an unconsumed copy for the one retry. Streams cannot be cloned after use, and a
    // ReadableStream body given by the caller cannot be replayed at all.
    const replayable = !(init?.body instanceof ReadableStream);
    const spare = replayable ? request.clone() : undefined;

    const token = await liveAccessToken(
      manager,
      connector,
      options.minTtlMs !== undefined ? { minTtlMs: options.minTtlMs } : {},
    );
    const response = await base(withToken(request, token));
    if (response.status === 403) await throwIfInsufficientScope(manager, connector, response);
    if (response.status !== 401) return response;

    const challenge = parseBearerChallenge(response.headers.get("www-authenticate"));
    await response.body?.cancel().catch(() => {});
    // RFC 6750 §3.1: invalid_token (or no error at all, for a token the server does not know).
    if (challenge?.error && challenge.error !== "invalid_token") {
      throw new TransientError(`the server rejected the request with 401 ${challenge.error}`, {
        connector,
        status: 401,
        serverError: challenge.error,
      });
    }
    const renewed = await manager.refreshAfterRejection(connector, token.token);
    if (!spare) {
      throw new TransientError(
        "the access token was renewed but the request body is a stream and cannot be sent again; retry the request",
        { connector, status: 401 },
      );
    }
    const retried = await base(withToken(spare, renewed));
    if (retried.status === 403) await throwIfInsufficientScope(manager, connector, retried);
    if (retried.status !== 401) return retried;
    await retried.body?.cancel().catch(() => {});
    // A token fresh from the authorization server is still refused: the grant no longer
    // authorizes this resource (revoked, or the audience changed). Only a human can fix that.
    const again = parseBearerChallenge(retried.headers.get("www-authenticate"));
    throw await manager.markReauthRequired(connector, "token_rejected", {
      serverError: again?.error ?? "invalid_token",
      ...(again?.errorDescription ? { serverErrorDescription: again.errorDescription } : {}),
    });
  };
}

function withToken(request: Request, token: AccessToken): Request {
  const headers = new Headers(request.headers);
  headers.set("authorization", `${token.tokenType} ${token.token.reveal()}`);
  return new Request(request, { headers });
}

/** RFC 6750 §3.1 insufficient_scope: a step-up a human must grant; the connector keeps working for other calls. */
async function throwIfInsufficientScope(
  manager: TokenManager,
  connector: string,
  response: Response,
): Promise<void> {
  const challenge = parseBearerChallenge(response.headers.get("www-authenticate"));
  if (challenge?.error !== "insufficient_scope") return;
  await response.body?.cancel().catch(() => {});
  const record = manager.cached(connector)?.record;
  const scope = [record?.tokens?.scope ?? record?.scope, challenge.scope].filter(Boolean).join(" ");
  throw new ReauthRequiredError({
    connector,
    reason: "insufficient_scope",
    since: manager.clock.now(),
    action: `run \`tokenkeeper login ${record?.server.mcpUrl ?? "<mcp-server-url>"} --name ${connector} --scope "${dedupe(scope)}"\``,
    serverError: "insufficient_scope",
    ...(challenge.errorDescription ? { serverErrorDescription: challenge.errorDescription } : {}),
    ...(challenge.scope ? { requiredScope: challenge.scope } : {}),
  });
}

function dedupe(scope: string): string {
  return [...new Set(scope.split(/\s+/).filter(Boolean))].join(" ");
}

// ---- shared by every surface that hands tokens to callers (fetch, SDK provider, run endpoint) ----

/** The reauth state a record carries, as the typed error every surface throws. */
export function reauthErrorFromState(record: ConnectorRecord): ReauthRequiredError | undefined {
  const reauth = record.state.reauth;
  if (record.state.health !== "reauth_required" || !reauth) return undefined;
  return new ReauthRequiredError({
    connector: record.name,
    reason: reauth.reason as ReauthReason,
    since: reauth.since,
    action: reauth.action,
    ...(reauth.serverError ? { serverError: reauth.serverError } : {}),
    ...(reauth.serverErrorDescription ? { serverErrorDescription: reauth.serverErrorDescription } : {}),
    ...(reauth.requiredScope ? { requiredScope: reauth.requiredScope } : {}),
  });
}

/** How often a connector the cache says is dead is looked up again in the store (a new login elsewhere). */
const REAUTH_RECHECK_MS = 1_000;
const reauthVerdicts = new WeakMap<TokenManager, Map<string, { at: number; error: ReauthRequiredError }>>();

/**
 * An access token for a caller about to use it. Like manager.getAccessToken, with one difference:
 * once the grant is known to be dead (the refresh got invalid_grant, recorded in the store), this
 * fails at once with ReauthRequiredError even while the last access token still has time left.
 * A revoked grant is a decision someone made; a JWT the resource server would still accept for a
 * few seconds is no reason to keep a 2 a.m. job going and fail it later, less clearly.
 * The store is consulted (at most once a second) before failing, so a new login in another
 * process is picked up.
 */
export async function liveAccessToken(
  manager: TokenManager,
  connector: string,
  options: GetTokenOptions = {},
): Promise<AccessToken> {
  const token = await manager.getAccessToken(connector, options);
  const cached = manager.cached(connector)?.record;
  if (cached?.state.health !== "reauth_required") return token;

  const now = manager.clock.now();
  let verdicts = reauthVerdicts.get(manager);
  if (!verdicts) {
    verdicts = new Map();
    reauthVerdicts.set(manager, verdicts);
  }
  const recent = verdicts.get(connector);
  if (recent && now - recent.at < REAUTH_RECHECK_MS) throw recent.error;

  const latest = await manager.store.get(connector);
  if (!latest) throw new NotFoundError(connector, manager.store.location);
  const dead = reauthErrorFromState(latest.record);
  if (dead) {
    verdicts.set(connector, { at: now, error: dead });
    throw dead;
  }
  verdicts.delete(connector);
  manager.invalidate(connector);
  return manager.getAccessToken(connector, options);
}

export { achievableMinTtlMs } from "../manager/refresh-policy.js";
