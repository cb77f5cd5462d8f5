/**
 * Is a stored client registration still known to its authorization server? Logging in again
 * reuses the connector's registration instead of registering a new client each time; a server
 * may have purged it meanwhile. In the browser flow a purged client_id would only surface as an
 * error page in the person's browser, so it is checked first, without the person.
 *
 * The check is one token request with a code that cannot be valid: RFC 6749 §5.2 has the server
 * answer `invalid_client` when client authentication fails (an unknown client among the causes),
 * and `invalid_grant` (or `unauthorized_client` for a client not allowed this grant) when the
 * client is fine. Nothing is issued; the dummy code and verifier are random and used once.
 */
import * as oauth from "oauth4webapi";
import { randomHex } from "../core/random.js";
import type { ConnectorRecord } from "../core/record.js";
import { callTokenEndpoint, type TokenEndpointDeps, TokenEndpointError } from "./token-endpoint.js";

export type ProbeVerdict = "registered" | "unknown_client";

/** Decides from the server's answer. Pure. */
export function judgeProbe(oauthError: string | undefined): ProbeVerdict {
  return oauthError === "invalid_client" ? "unknown_client" : "registered";
}

/**
 * Sends the probe for `record`'s client. Transient failures (network, 5xx) propagate as
 * TransientError: the login could not go on against that server anyway.
 */
export async function probeClient(
  record: ConnectorRecord,
  redirectUri: string | undefined,
  deps: TokenEndpointDeps,
): Promise<ProbeVerdict> {
  const params: Record<string, string> = {
    code: `tokenkeeper-probe-${randomHex(16)}`,
    code_verifier: `tokenkeeper-probe-${randomHex(24)}`,
  };
  if (redirectUri) params.redirect_uri = redirectUri;
  try {
    await callTokenEndpoint(
      record,
      deps,
      (ctx, options) => {
        const { additionalParameters, ...rest } = options;
        return oauth.genericTokenEndpointRequest(
          ctx.as,
          ctx.client,
          ctx.auth,
          "authorization_code",
          { ...params, ...(additionalParameters as Record<string, string>) },
          rest,
        );
      },
      (ctx, response) => oauth.processGenericTokenEndpointResponse(ctx.as, ctx.client, response),
      null,
    );
    return "registered";
  } catch (error) {
    if (error instanceof TokenEndpointError) return judgeProbe(error.oauthError);
    throw error;
  }
}
