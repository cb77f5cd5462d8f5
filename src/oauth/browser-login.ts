/**
 * The authorization-code flow for a native app (RFC 8252) as MCP requires it: PKCE with S256
 * (RFC 7636; MCP authorization, "Authorization Code Protection": refuse a server that does not
 * advertise it), `state`, the `resource` indicator (RFC 8707 §2.1) on both the authorization and
 * the token request, a loopback redirect, and the `iss` check (RFC 9207) where advertised.
 */
import * as oauth from "oauth4webapi";
import type { Clock } from "../core/clock.js";
import { LoginError, ProtocolError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { scrubText } from "../core/secret.js";
import { assertSecureUrl, describeUrl, type FetchLike, httpDepsOf } from "./http.js";
import type { CallbackPage, LoopbackListener } from "./loopback-callback.js";
import type { AuthorizationServerMetadata } from "./metadata-schemas.js";
import {
  callTokenEndpoint,
  type GrantOutcome,
  oauthClientFor,
  TokenEndpointError,
} from "./token-endpoint.js";

export interface FlowDeps {
  clock: Clock;
  fetch?: FetchLike;
  signal?: AbortSignal;
  /** Per-request timeout for the token endpoint. */
  requestTimeoutMs?: number;
}

export interface AuthorizationRequest {
  url: string;
  state: string;
  codeVerifier: string;
}

/** MCP authorization: a client MUST refuse to proceed when S256 is not advertised. */
export function assertPkceS256(metadata: AuthorizationServerMetadata): void {
  if (!(metadata.code_challenge_methods_supported ?? []).includes("S256")) {
    throw new LoginError(
      `refusing to log in: the authorization server ${metadata.issuer} does not advertise PKCE S256 in code_challenge_methods_supported (${
        metadata.code_challenge_methods_supported?.join(", ") || "absent"
      }); the MCP authorization specification requires it`,
      { problem: "pkce_s256_missing", server: metadata.issuer, field: "code_challenge_methods_supported" },
    );
  }
}

/** Builds the authorization URL (RFC 6749 §4.1.1 + RFC 7636 §4.3 + RFC 8707 §2). */
export async function buildAuthorizationRequest(
  record: ConnectorRecord,
  redirectUri: string,
): Promise<AuthorizationRequest> {
  const metadata = record.server.metadata as AuthorizationServerMetadata;
  assertPkceS256(metadata);
  if (!metadata.authorization_endpoint) {
    throw new ProtocolError(
      `the authorization server ${record.server.issuer} has no authorization_endpoint`,
      {
        server: record.server.issuer,
        field: "authorization_endpoint",
        problem: "invalid_metadata",
      },
    );
  }
  if (metadata.response_types_supported && !metadata.response_types_supported.includes("code")) {
    throw new LoginError(
      `the authorization server ${record.server.issuer} does not support response_type "code"`,
      {
        problem: "unsupported_response_type",
        field: "response_types_supported",
      },
    );
  }
  const url = new URL(assertSecureUrl(metadata.authorization_endpoint, "authorization_endpoint"));
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const p = url.searchParams;
  p.set("response_type", "code");
  p.set("client_id", record.client.clientId);
  p.set("redirect_uri", redirectUri);
  p.set("code_challenge", await oauth.calculatePKCECodeChallenge(codeVerifier));
  p.set("code_challenge_method", "S256");
  p.set("state", state);
  if (record.scope) p.set("scope", record.scope);
  p.set("resource", record.server.resource);
  // OpenID Connect Core §11: offline_access is ignored unless the user is asked to consent.
  if (record.scope?.split(" ").includes("offline_access")) p.set("prompt", "consent");
  return { url: url.href, state, codeVerifier };
}

export type CallbackProblem =
  | "state_mismatch"
  | "iss_mismatch"
  | "iss_missing"
  | "access_denied"
  | "authorization_error"
  | "no_code";

/**
 * Classifies an authorization response without I/O, so the browser page and the terminal
 * say the same thing. RFC 9207 §2.4: a present `iss` must equal the issuer; when the server
 * advertises the parameter it must be present.
 */
export function judgeCallback(
  params: URLSearchParams,
  expected: { state: string; issuer: string; issAdvertised: boolean },
): { ok: true } | { ok: false; problem: CallbackProblem; message: string } {
  const iss = params.get("iss");
  if (iss !== null && iss !== expected.issuer) {
    return {
      ok: false,
      problem: "iss_mismatch",
      message: `the authorization response names issuer ${scrubText(iss, 200)}, not ${expected.issuer} (RFC 9207 mix-up protection)`,
    };
  }
  if (iss === null && expected.issAdvertised) {
    return {
      ok: false,
      problem: "iss_missing",
      message: `the authorization response has no iss parameter although ${expected.issuer} advertises it (RFC 9207)`,
    };
  }
  if (params.get("state") !== expected.state) {
    return {
      ok: false,
      problem: "state_mismatch",
      message:
        "the authorization response does not carry this login's state: it belongs to another login attempt or was forged",
    };
  }
  const error = params.get("error");
  if (error) {
    const description = params.get("error_description");
    return {
      ok: false,
      problem: error === "access_denied" ? "access_denied" : "authorization_error",
      message: `the authorization server answered ${scrubText(error, 64)}${description ? `: ${scrubText(description, 200)}` : ""}`,
    };
  }
  if (!params.get("code"))
    return { ok: false, problem: "no_code", message: "the authorization response has no code" };
  return { ok: true };
}

export interface BrowserLoginInput {
  /** The record being built: server, client and scope set; tokens null. */
  record: ConnectorRecord;
  listener: LoopbackListener;
  /** Shows the URL to the person (always printed; opened in a browser when possible). */
  present: (authorizationUrl: string) => Promise<void> | void;
  /** How long to wait for the browser (default 5 minutes). */
  timeoutMs?: number;
}

export const DEFAULT_BROWSER_TIMEOUT_MS = 5 * 60_000;

export async function browserLogin(input: BrowserLoginInput, deps: FlowDeps): Promise<GrantOutcome> {
  const { record, listener } = input;
  const request = await buildAuthorizationRequest(record, listener.redirectUri);
  const metadata = record.server.metadata as AuthorizationServerMetadata;
  const expected = {
    state: request.state,
    issuer: record.server.issuer,
    issAdvertised: metadata.authorization_response_iss_parameter_supported === true,
  };
  listener.setDescriber((params): CallbackPage => {
    // `state` is this login's secret (RFC 6749 §10.12): a request without it did not come from
    // the authorization server's redirect for this login, so it may not end the login.
    if (params.get("state") !== expected.state)
      return {
        ok: false,
        ignore: true,
        title: "Not this login",
        message:
          "This response does not carry the state of the login Tokenkeeper is waiting for; it was ignored. If you are logging in, finish in the window Tokenkeeper opened.",
      };
    const verdict = judgeCallback(params, expected);
    return verdict.ok
      ? {
          ok: true,
          title: "Authorization received",
          message: "Tokenkeeper is finishing the login in your terminal. You may close this window.",
        }
      : {
          ok: false,
          title: "Login failed",
          message: `${verdict.message}. Nothing was stored. You may close this window.`,
        };
  });

  await input.present(request.url);
  const params = await listener.waitForCallback({
    clock: deps.clock,
    timeoutMs: input.timeoutMs ?? DEFAULT_BROWSER_TIMEOUT_MS,
    ...(deps.signal ? { signal: deps.signal } : {}),
  });

  const verdict = judgeCallback(params, expected);
  if (!verdict.ok)
    throw new LoginError(`login failed: ${verdict.message}; nothing was stored`, {
      problem: verdict.problem,
    });
  const ctx = oauthClientFor(record);
  let validated: URLSearchParams;
  try {
    // oauth4webapi repeats the state and iss checks; it is the authority, our judge explains.
    validated = oauth.validateAuthResponse(ctx.as, ctx.client, params, request.state);
  } catch (cause) {
    throw new LoginError(
      "login failed: the authorization response did not validate; nothing was stored",
      { problem: "invalid_callback" },
      { cause },
    );
  }

  try {
    return await callTokenEndpoint(
      record,
      httpDepsOf(deps),
      (c, options) =>
        oauth.authorizationCodeGrantRequest(
          c.as,
          c.client,
          c.auth,
          validated,
          listener.redirectUri,
          request.codeVerifier,
          options,
        ),
      (c, response) => oauth.processAuthorizationCodeResponse(c.as, c.client, response),
      null,
    );
  } catch (error) {
    if (error instanceof TokenEndpointError) {
      throw new LoginError(
        `the token endpoint ${describeUrl(ctx.as.token_endpoint!)} refused the authorization code: ${error.message}`,
        {
          problem: "code_exchange_failed",
          serverError: error.oauthError,
        },
      );
    }
    throw error;
  }
}
