/**
 * Client identity, in the order the MCP authorization specification (2025-11-25, "Client
 * Registration") prefers: a pre-registered client, a Client ID Metadata Document, then Dynamic
 * Client Registration (RFC 7591). Each path produces a ClientRegistration whose secret (if
 * any) is a Secret from the first moment.
 */
import { ConfigError, LoginError, ProtocolError, TransientError } from "../core/errors.js";
import type { ClientRegistration, TokenEndpointAuthMethod } from "../core/record.js";
import { type Secret, scrubServerText, secretOrUndefined } from "../core/secret.js";
import type { DiscoveryDeps } from "./discovery.js";
import { assertSecureUrl, boundedFetch, describeUrl, parseRetryAfter } from "./http.js";
import {
  type AuthorizationServerMetadata,
  type ClientMetadataDocument,
  clientMetadataDocumentSchema,
  readDocument,
  registrationErrorSchema,
  registrationResponseSchema,
} from "./metadata-schemas.js";

export type LoginFlow = "browser" | "device" | "client_credentials";

export const CLIENT_NAME = "Tokenkeeper";
const AUTH_METHODS: readonly TokenEndpointAuthMethod[] = [
  "none",
  "client_secret_basic",
  "client_secret_post",
];

/** The grant types a client needs for a flow (RFC 7591 §2). */
export function grantTypesFor(flow: LoginFlow): string[] {
  switch (flow) {
    case "browser":
      return ["authorization_code", "refresh_token"];
    case "device":
      return ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"];
    case "client_credentials":
      return ["client_credentials"];
  }
}

/**
 * How a confidential client authenticates: RFC 8414 §2 makes client_secret_basic the default
 * when the server lists nothing, and RFC 6749 §2.3.1 requires servers to support it.
 */
export function chooseSecretAuthMethod(metadata: AuthorizationServerMetadata): TokenEndpointAuthMethod {
  const supported = metadata.token_endpoint_auth_methods_supported;
  if (!supported || supported.includes("client_secret_basic")) return "client_secret_basic";
  if (supported.includes("client_secret_post")) return "client_secret_post";
  throw new LoginError(
    `the authorization server ${metadata.issuer} supports none of client_secret_basic or client_secret_post (it lists ${supported.join(", ")})`,
    { problem: "unsupported_auth_method" },
  );
}

// ---- pre-registered -------------------------------------------------------------------------

export interface PreregisteredInput {
  clientId: string;
  clientSecret?: Secret;
  /** A redirect URI registered with the provider (for display and the record). */
  redirectUri?: string;
}

export function preregisteredClient(
  input: PreregisteredInput,
  metadata: AuthorizationServerMetadata,
): ClientRegistration {
  if (!input.clientId.trim()) throw new ConfigError("--client-id must not be empty");
  const method: TokenEndpointAuthMethod = input.clientSecret ? chooseSecretAuthMethod(metadata) : "none";
  return {
    kind: "preregistered",
    clientId: input.clientId.trim(),
    ...(input.clientSecret ? { clientSecret: input.clientSecret } : {}),
    tokenEndpointAuthMethod: method,
    ...(input.redirectUri ? { redirectUris: [input.redirectUri] } : {}),
  };
}

// ---- Client ID Metadata Document ------------------------------------------------------------

/**
 * A client_id that is an HTTPS URL with a path, serving the client's metadata. The server
 * must advertise `client_id_metadata_document_supported`. We read the document ourselves to
 * check it names itself and to learn its redirect URIs: a mismatch would otherwise surface
 * only as an error page in the browser.
 */
export async function metadataDocumentClient(
  clientIdUrl: string,
  metadata: AuthorizationServerMetadata,
  deps: DiscoveryDeps,
): Promise<{ client: ClientRegistration; document: ClientMetadataDocument }> {
  if (metadata.client_id_metadata_document_supported !== true) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} does not advertise client_id_metadata_document_supported; drop --client-metadata-url to use dynamic registration, or use --client-id`,
      { problem: "cimd_unsupported" },
    );
  }
  const url = assertSecureUrl(clientIdUrl, "client metadata document URL");
  if (url.pathname === "/" || url.hash) {
    throw new ConfigError(
      `the client metadata document URL must have a path and no fragment: ${describeUrl(clientIdUrl)}`,
    );
  }
  const where = describeUrl(clientIdUrl);
  const http = boundedFetch({
    clock: deps.clock,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    maxBytes: 64 * 1024,
  });
  const response = await http(clientIdUrl, {
    headers: { accept: "application/json" },
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  if (!response.ok) {
    throw new LoginError(`the client metadata document at ${where} answered ${response.status}`, {
      problem: "cimd_unavailable",
      url: where,
    });
  }
  const document = await readDocument(
    clientMetadataDocumentSchema,
    response,
    "client metadata document",
    where,
  );
  if (document.client_id !== clientIdUrl) {
    throw new ProtocolError(
      `the client metadata document at ${where} names client_id ${describeUrl(document.client_id)}, not its own URL`,
      {
        server: where,
        field: "client_id",
        problem: "cimd_mismatch",
      },
    );
  }
  const method = document.token_endpoint_auth_method ?? "none";
  if (method !== "none") {
    throw new LoginError(
      `the client metadata document at ${where} uses token_endpoint_auth_method ${method}; Tokenkeeper supports "none" for metadata-document clients`,
      {
        problem: "unsupported_auth_method",
      },
    );
  }
  return {
    client: {
      kind: "metadata_document",
      clientId: clientIdUrl,
      tokenEndpointAuthMethod: "none",
      ...(document.redirect_uris ? { redirectUris: document.redirect_uris } : {}),
    },
    document,
  };
}

// ---- Dynamic Client Registration (RFC 7591) -------------------------------------------------

export interface DynamicRegistrationInput {
  flow: LoginFlow;
  /** Required for the browser flow (RFC 7591 §2: redirect-based flows register their redirect URIs). */
  redirectUri?: string;
  scope?: string;
}

export async function registerDynamicClient(
  metadata: AuthorizationServerMetadata,
  input: DynamicRegistrationInput,
  deps: DiscoveryDeps,
): Promise<ClientRegistration> {
  if (!metadata.registration_endpoint) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} does not support dynamic client registration: register a client with the provider and use \`login --client-id\``,
      { problem: "dcr_unsupported" },
    );
  }
  const endpoint = assertSecureUrl(metadata.registration_endpoint, "registration_endpoint");
  const where = describeUrl(endpoint);
  // A machine client needs a secret; the interactive flows are public native clients (RFC 8252 §8.4).
  const method: TokenEndpointAuthMethod =
    input.flow === "client_credentials" ? chooseSecretAuthMethod(metadata) : "none";
  const body: Record<string, unknown> = {
    client_name: CLIENT_NAME,
    grant_types: grantTypesFor(input.flow),
    response_types: input.flow === "browser" ? ["code"] : [],
    token_endpoint_auth_method: method,
    redirect_uris: input.redirectUri ? [input.redirectUri] : [],
  };
  // OpenID Connect Registration §2: loopback redirects belong to native clients.
  if (input.flow !== "client_credentials") body.application_type = "native";
  if (input.scope) body.scope = input.scope;

  const http = boundedFetch({
    clock: deps.clock,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.timeoutMs ? { timeoutMs: deps.timeoutMs } : {}),
  });
  const response = await http(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  if (response.status >= 400) {
    let detail = "";
    try {
      const parsed = registrationErrorSchema.safeParse(JSON.parse(await response.text()));
      if (parsed.success) {
        // Server-chosen text: no controls, bounded, and no credential-shaped value (a registration
        // sends no secret of ours, so there is no exact value to remove).
        const { error, error_description: description } = parsed.data;
        detail = `: ${scrubServerText(error, [], 64)}${description ? ` (${scrubServerText(description, [], 200)})` : ""}`;
      }
    } catch {
      // Not an RFC 7591 §3.2.2 error body; the status says enough.
    }
    // A server error or rate limit is the server's state, not a refusal of this client: try later (75).
    if (response.status >= 500 || response.status === 429) {
      throw new TransientError(
        `dynamic client registration at ${where} failed with ${response.status}${detail}`,
        {
          problem: "dcr_unavailable",
          server: where,
          status: response.status,
          ...retryAfterField(parseRetryAfter(response.headers.get("retry-after"), deps.clock.now())),
        },
      );
    }
    throw new LoginError(`dynamic client registration at ${where} failed with ${response.status}${detail}`, {
      problem: "dcr_failed",
      server: where,
      status: response.status,
    });
  }
  // RFC 7591 §3.2.1 says 201; some servers send 200. Anything else in 2xx/3xx is not a registration.
  if (response.status !== 201 && response.status !== 200) {
    throw new ProtocolError(`dynamic client registration at ${where} answered ${response.status}`, {
      server: where,
      problem: "dcr_failed",
    });
  }
  const data = await readDocument(registrationResponseSchema, response, "client registration", where);
  const returned = data.token_endpoint_auth_method;
  const finalMethod =
    returned && (AUTH_METHODS as readonly string[]).includes(returned)
      ? (returned as TokenEndpointAuthMethod)
      : method;
  if (returned && !(AUTH_METHODS as readonly string[]).includes(returned)) {
    throw new ProtocolError(
      `the registration at ${where} assigned token_endpoint_auth_method ${returned}, which Tokenkeeper does not support`,
      {
        server: where,
        field: "token_endpoint_auth_method",
        problem: "unsupported_auth_method",
      },
    );
  }
  if (finalMethod !== "none" && !data.client_secret) {
    throw new ProtocolError(
      `the registration at ${where} uses ${finalMethod} but returned no client_secret`,
      {
        server: where,
        field: "client_secret",
        problem: "invalid_metadata",
      },
    );
  }
  const secret = finalMethod === "none" ? undefined : secretOrUndefined(data.client_secret);
  const registrationAccessToken = secretOrUndefined(data.registration_access_token);
  return {
    kind: "dynamic",
    clientId: data.client_id,
    ...(secret ? { clientSecret: secret } : {}),
    tokenEndpointAuthMethod: finalMethod,
    ...(data.redirect_uris
      ? { redirectUris: data.redirect_uris }
      : input.redirectUri
        ? { redirectUris: [input.redirectUri] }
        : {}),
    ...(data.client_secret_expires_at !== undefined
      ? { clientSecretExpiresAt: data.client_secret_expires_at }
      : {}),
    ...(registrationAccessToken ? { registrationAccessToken } : {}),
    ...(data.registration_client_uri ? { registrationClientUri: data.registration_client_uri } : {}),
  };
}

function retryAfterField(ms: number | undefined): { retryAfterMs?: number } {
  return ms === undefined ? {} : { retryAfterMs: ms };
}
