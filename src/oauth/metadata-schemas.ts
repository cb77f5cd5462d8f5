/**
 * Schemas for every document a server sends during login: protected-resource metadata
 * (RFC 9728), authorization-server metadata (RFC 8414 / OpenID Discovery), dynamic client
 * registration responses (RFC 7591) and client ID metadata documents. Parsed once, at the
 * edge; a failure names the field and the server, never the document's content.
 */
import { z } from "zod";
import { ProtocolError } from "../core/errors.js";

const url = z.string().refine((v) => URL.canParse(v), { message: "must be an absolute URL" });
const stringList = z.array(z.string());

/** RFC 9728 §2. `authorization_servers` is optional there; the MCP authorization spec requires one or more. */
export const protectedResourceMetadataSchema = z.looseObject({
  resource: url,
  authorization_servers: z.array(url).optional(),
  scopes_supported: stringList.optional(),
  bearer_methods_supported: stringList.optional(),
  resource_name: z.string().optional(),
  resource_documentation: z.string().optional(),
});
export type ProtectedResourceMetadata = z.infer<typeof protectedResourceMetadataSchema>;

/** RFC 8414 §2, plus the OpenID Discovery and extension fields login and doctor look at. */
export const authorizationServerMetadataSchema = z.looseObject({
  issuer: url,
  authorization_endpoint: url.optional(),
  token_endpoint: url.optional(),
  registration_endpoint: url.optional(),
  revocation_endpoint: url.optional(),
  device_authorization_endpoint: url.optional(),
  introspection_endpoint: url.optional(),
  jwks_uri: url.optional(),
  scopes_supported: stringList.optional(),
  response_types_supported: stringList.optional(),
  grant_types_supported: stringList.optional(),
  code_challenge_methods_supported: stringList.optional(),
  token_endpoint_auth_methods_supported: stringList.optional(),
  revocation_endpoint_auth_methods_supported: stringList.optional(),
  /** RFC 9207 §3. */
  authorization_response_iss_parameter_supported: z.boolean().optional(),
  /** OAuth Client ID Metadata Document, as used by the MCP authorization spec (2025-11-25). */
  client_id_metadata_document_supported: z.boolean().optional(),
});
export type AuthorizationServerMetadata = z.infer<typeof authorizationServerMetadataSchema>;

/** RFC 7591 §3.2.1: the registration response. */
export const registrationResponseSchema = z.looseObject({
  client_id: z.string().min(1),
  client_secret: z.string().min(1).optional(),
  client_id_issued_at: z.number().optional(),
  client_secret_expires_at: z.number().nonnegative().optional(),
  registration_access_token: z.string().min(1).optional(),
  registration_client_uri: url.optional(),
  token_endpoint_auth_method: z.string().optional(),
  redirect_uris: stringList.optional(),
  grant_types: stringList.optional(),
});
export type RegistrationResponse = z.infer<typeof registrationResponseSchema>;

/** RFC 7591 §3.2.2: a registration error. */
export const registrationErrorSchema = z.looseObject({
  error: z.string().min(1),
  error_description: z.string().optional(),
});

/** A client ID metadata document: the client's own metadata, served at its client_id URL. */
export const clientMetadataDocumentSchema = z.looseObject({
  client_id: url,
  redirect_uris: z.array(url).optional(),
  token_endpoint_auth_method: z.string().optional(),
  grant_types: stringList.optional(),
  client_name: z.string().optional(),
});
export type ClientMetadataDocument = z.infer<typeof clientMetadataDocumentSchema>;

/**
 * Validates `data` against `schema`. On failure, throws a ProtocolError naming the first bad
 * field, what was wrong with it, and the server that sent it.
 */
export function parseDocument<S extends z.ZodType>(
  schema: S,
  data: unknown,
  what: string,
  server: string,
): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.join(".") : "(document)";
  const message = (issue?.message ?? "is invalid").replace(/^Invalid input: /, "");
  const problem =
    issue?.code === "invalid_type" && message.endsWith("received undefined") ? "is missing" : message;
  throw new ProtocolError(`${what} from ${server} is invalid: field "${field}" ${problem}`, {
    server,
    field,
    problem: "invalid_metadata",
    document: what,
  });
}

/** Reads a response's JSON body and validates it against `schema`, once, at the edge. */
export async function readDocument<S extends z.ZodType>(
  schema: S,
  response: Response,
  what: string,
  server: string,
): Promise<z.infer<S>> {
  return parseDocument(schema, await readJsonBody(response, what, server), what, server);
}

/** Parses a JSON body, turning bad JSON into a ProtocolError that names the server. */
export async function readJsonBody(response: Response, what: string, server: string): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new ProtocolError(
      `${what} from ${server} is not valid JSON (${text.length === 0 ? "empty body" : `${text.length} bytes`})`,
      {
        server,
        field: "(document)",
        problem: "invalid_json",
        document: what,
      },
    );
  }
}
