/**
 * Is a stored client registration still known to its authorization server? Logging in again
 * reuses the connector's registration instead of registering a new client each time; a server
 * may have purged it meanwhile. In the browser flow a purged client_id would only surface as an
 * error page in the person's browser, so it is checked first, without the person.
 *
 * The check is one token request with a refresh token that cannot be valid: RFC 6749 §5.2 has
 * the server answer `invalid_client` when client authentication fails (an unknown client among
 * the causes), and `invalid_grant` (or `unauthorized_client` for a client not allowed this
 * grant) when the client is fine. Nothing is issued; the dummy token is random and used once.
 * Not a dummy authorization code: with it comes a code_verifier that matches no challenge the
 * client ever sent, which a server (the MCP conformance suite's among them) rightly reports as
 * a PKCE violation.
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
export async function probeClient(record: ConnectorRecord, deps: TokenEndpointDeps): Promise<ProbeVerdict> {
  const params: Record<string, string> = { refresh_token: `tokenkeeper-probe-${randomHex(24)}` };
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
          "refresh_token",
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
