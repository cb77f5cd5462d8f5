/**
 * The device authorization grant (RFC 8628) for hosts without a browser: ask for a user code,
 * show it with the verification URI, and poll the token endpoint honouring `interval` and
 * `slow_down` (§3.5) until approval, denial or expiry. Waiting uses the injected clock, so
 * tests drive it with a ManualClock.
 */
import * as oauth from "oauth4webapi";
import { LoginError, ProtocolError, TokenkeeperError, TransientError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import type { FlowDeps } from "./browser-login.js";
import { DEVICE_CODE_GRANT } from "./discovery.js";
import { assertSecureUrl, boundedFetch, describeUrl, httpDepsOf, isLoopbackHost } from "./http.js";
import type { AuthorizationServerMetadata } from "./metadata-schemas.js";
import { SentSecrets } from "./sent-secrets.js";
import {
  callTokenEndpoint,
  type GrantOutcome,
  oauthClientFor,
  TokenEndpointError,
} from "./token-endpoint.js";

/** RFC 8628 §3.2: the default polling interval when the server gives none. */
export const DEFAULT_INTERVAL_S = 5;
/** RFC 8628 §3.5: slow_down adds 5 seconds to the interval, for this and all later requests. */
export const SLOW_DOWN_STEP_S = 5;
const MAX_CONSECUTIVE_TRANSIENT = 3;

export interface DevicePrompt {
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** How long the code stays valid (ms). */
  expiresInMs: number;
}

export interface DeviceLoginInput {
  record: ConnectorRecord;
  /** Shows the user code and where to enter it. */
  present: (prompt: DevicePrompt) => Promise<void> | void;
  /** Upper bound on the whole wait, on top of the code's own expiry. */
  timeoutMs?: number;
}

export function assertDeviceFlowSupported(metadata: AuthorizationServerMetadata): string {
  const endpoint = metadata.device_authorization_endpoint;
  if (
    !endpoint ||
    (metadata.grant_types_supported && !metadata.grant_types_supported.includes(DEVICE_CODE_GRANT))
  ) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} does not offer the device flow (no device_authorization_endpoint or device_code grant); log in with the browser flow, on this host or another one with a browser`,
      { problem: "device_flow_unsupported" },
    );
  }
  return endpoint;
}

export async function deviceLogin(input: DeviceLoginInput, deps: FlowDeps): Promise<GrantOutcome> {
  const { record } = input;
  const metadata = record.server.metadata as AuthorizationServerMetadata;
  const endpointUrl = assertSecureUrl(assertDeviceFlowSupported(metadata), "device_authorization_endpoint");
  const where = describeUrl(endpointUrl);
  const ctx = oauthClientFor(record);
  const http = boundedFetch(httpDepsOf(deps));

  const params: Record<string, string> = { resource: record.server.resource };
  if (record.scope) params.scope = record.scope;
  const sent = new SentSecrets().add(record.client.clientSecret?.reveal());
  const response = await oauth.deviceAuthorizationRequest(ctx.as, ctx.client, ctx.auth, params, {
    [oauth.customFetch]: (url, init) => {
      sent.noteRequest(init as RequestInit);
      return http(url, init as RequestInit);
    },
    ...(endpointUrl.protocol === "http:" && isLoopbackHost(endpointUrl.hostname)
      ? { [oauth.allowInsecureRequests]: true }
      : {}),
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  if (response.status >= 500 || response.status === 429) {
    throw new TransientError(`${where} answered ${response.status}; try again later`, {
      url: where,
      status: response.status,
      kind: "http",
    });
  }
  let authorization: oauth.DeviceAuthorizationResponse;
  try {
    authorization = await oauth.processDeviceAuthorizationResponse(ctx.as, ctx.client, response);
  } catch (cause) {
    if (cause instanceof oauth.ResponseBodyError) {
      throw new LoginError(
        `the device authorization endpoint ${where} refused: ${sent.scrub(cause.error, 64)}${cause.error_description ? ` (${sent.scrub(cause.error_description, 200)})` : ""}`,
        { problem: "device_authorization_failed", serverError: sent.scrub(cause.error, 64) },
      );
    }
    throw new ProtocolError(
      `the device authorization response from ${where} is invalid`,
      { server: where, problem: "invalid_metadata" },
      { cause },
    );
  }
  assertSecureUrl(authorization.verification_uri, "verification_uri");

  const startedAt = deps.clock.now();
  const expiresInMs = Math.max(0, authorization.expires_in * 1000);
  const deadline = startedAt + Math.min(expiresInMs, input.timeoutMs ?? expiresInMs);
  await input.present({
    userCode: authorization.user_code,
    verificationUri: authorization.verification_uri,
    ...(typeof authorization.verification_uri_complete === "string"
      ? { verificationUriComplete: authorization.verification_uri_complete }
      : {}),
    expiresInMs,
  });

  const deviceCode = authorization.device_code;
  let intervalMs =
    (typeof authorization.interval === "number" && authorization.interval > 0
      ? authorization.interval
      : DEFAULT_INTERVAL_S) * 1000;
  let transientInARow = 0;
  for (;;) {
    // §3.5: wait at least `interval` between requests, including before the first one.
    await sleepOrCancel(deps, intervalMs);
    if (deps.clock.now() >= deadline) {
      const expired = deadline >= startedAt + expiresInMs;
      throw new LoginError(
        expired
          ? "the device code expired before anyone approved it; run `tokenkeeper login --device` again and enter the new code sooner"
          : "gave up waiting for the device code to be approved (--timeout); run `tokenkeeper login --device` again",
        { problem: expired ? "expired_token" : "device_timeout" },
      );
    }
    try {
      return await callTokenEndpoint(
        record,
        httpDepsOf(deps),
        (c, options) => oauth.deviceCodeGrantRequest(c.as, c.client, c.auth, deviceCode, options),
        (c, res) => oauth.processDeviceCodeResponse(c.as, c.client, res),
        null,
      );
    } catch (error) {
      if (error instanceof TokenEndpointError) {
        transientInARow = 0;
        switch (error.oauthError) {
          case "authorization_pending":
            continue;
          case "slow_down":
            intervalMs += SLOW_DOWN_STEP_S * 1000;
            continue;
          case "expired_token":
            throw new LoginError(
              "the device code expired before anyone approved it; run `tokenkeeper login --device` again and enter the new code sooner",
              {
                problem: "expired_token",
                serverError: "expired_token",
              },
            );
          case "access_denied":
            throw new LoginError(
              "the authorization was denied on the verification page; nothing was stored",
              {
                problem: "access_denied",
                serverError: "access_denied",
              },
            );
          default:
            throw new LoginError(`the token endpoint refused the device code: ${error.message}`, {
              problem: "device_grant_failed",
              serverError: error.oauthError,
            });
        }
      }
      if (error instanceof TransientError && ++transientInARow <= MAX_CONSECUTIVE_TRANSIENT) continue;
      throw error;
    }
  }
}

async function sleepOrCancel(deps: FlowDeps, ms: number): Promise<void> {
  try {
    await deps.clock.sleep(ms, deps.signal);
  } catch {
    throw new TokenkeeperError(
      "cancelled",
      "login cancelled while waiting for the device code to be approved",
      { problem: "cancelled" },
    );
  }
}
