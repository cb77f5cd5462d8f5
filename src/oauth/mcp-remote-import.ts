/**
 * Adopting an authorization mcp-remote already holds, so switching costs no sign-in.
 *
 * mcp-remote keeps, per server, two JSON files in its config directory
 * (`$MCP_REMOTE_CONFIG_DIR`, else `~/.mcp-auth`): `<hash>_client_info.json`, the RFC 7591
 * registration response it got (client_id, redirect_uris, …), and `<hash>_tokens.json`, the
 * token response (access_token, token_type, expires_in, refresh_token, scope) plus, in newer
 * releases, `expires_at` (epoch ms) and `issuer`. `<hash>` is the hex MD5 of the server URL
 * (joined by "|" with the authorize resource, params, headers, metadata URL and token endpoint
 * when those options were given). The directory inside is `mcp-remote-v1` in current releases;
 * older ones used `mcp-remote-<package version>`, and their tokens carry only `expires_in`,
 * relative to when the file was written.
 *
 * Everything read here is validated before it becomes a record; a file that does not look
 * like what mcp-remote writes is refused with the field that is wrong, never half-imported.
 */
import { createHash } from "node:crypto";
import { ConfigError } from "../core/errors.js";
import { peekJwtClaims } from "../core/jwt.js";
import {
  type ClientRegistration,
  type ConnectorRecord,
  type GrantKind,
  initialState,
  type TokenEndpointAuthMethod,
  type TokenSet,
} from "../core/record.js";
import { Secret } from "../core/secret.js";
import { arrayOf, number, object, optional, ShapeError, string } from "../core/shape.js";
import { type DiscoveryResult, issuerMatches } from "./discovery.js";
import type { AuthorizationServerMetadata } from "./metadata-schemas.js";
import { chooseSecretAuthMethod } from "./registration.js";
import { MAX_ACCESS_TOKEN_LIFETIME_S, tokenResponseProblem } from "./token-response.js";

/** The directory name current mcp-remote releases use under the config base. */
export const MCP_REMOTE_CURRENT_DIR = "mcp-remote-v1";

/**
 * How much earlier than mcp-remote's stated expiry the imported access token counts as
 * expired. `expires_in` is relative to a response we did not see (the file was written some
 * time after it arrived), so the derived expiry can only be too late; a minute covers the
 * write delay and any clock difference, and a token refreshed a minute early costs nothing.
 */
export const IMPORT_EXPIRY_MARGIN_MS = 60_000;

/** mcp-remote's file-name hash for a server URL given without extra options. */
export function mcpRemoteServerHash(serverUrl: string, extra: string[] = []): string {
  return createHash("md5")
    .update([serverUrl, ...extra].join("|"))
    .digest("hex");
}

/**
 * Which version directories to look in, best first: the current `mcp-remote-v1`, then the
 * per-version directories of older releases, newest version first.
 */
export function orderConfigDirs(entries: string[]): string[] {
  const legacy = entries
    .map((e) => ({ e, m: /^mcp-remote-(\d+)\.(\d+)\.(\d+)$/.exec(e) }))
    .filter((x): x is { e: string; m: RegExpExecArray } => x.m !== null)
    .sort((a, b) => {
      for (let i = 1; i <= 3; i++) {
        const d = Number(b.m[i]) - Number(a.m[i]);
        if (d !== 0) return d;
      }
      return 0;
    })
    .map((x) => x.e);
  return [...(entries.includes(MCP_REMOTE_CURRENT_DIR) ? [MCP_REMOTE_CURRENT_DIR] : []), ...legacy];
}

const nonEmpty = string({ nonEmpty: true });

const clientInfoSchema = object(
  {
    client_id: nonEmpty,
    client_secret: optional(nonEmpty),
    client_secret_expires_at: optional(number({ min: 0 })),
    token_endpoint_auth_method: optional(nonEmpty),
    redirect_uris: optional(arrayOf(nonEmpty)),
    grant_types: optional(arrayOf(nonEmpty)),
    issuer: optional(nonEmpty),
  },
  { loose: true },
);

const tokensSchema = object(
  {
    access_token: nonEmpty,
    token_type: nonEmpty,
    expires_in: optional(number({ min: 0 })),
    expires_at: optional(number({ min: 0 })),
    refresh_token: optional(nonEmpty),
    scope: optional(string()),
    requested_scope: optional(string()),
    issuer: optional(nonEmpty),
  },
  { loose: true },
);

export interface McpRemoteFiles {
  /** Parsed JSON of `<hash>_client_info.json`. */
  clientInfo: unknown;
  /** Parsed JSON of `<hash>_tokens.json`. */
  tokens: unknown;
  /** The tokens file's modification time (epoch ms): when mcp-remote wrote it. */
  tokensWrittenAt: number;
  /** Where they were found, for messages (a directory, never contents). */
  where: string;
}

function parse<T>(check: (v: unknown, path: string) => T, value: unknown, file: string): T {
  try {
    return check(value, "");
  } catch (error) {
    if (error instanceof ShapeError)
      throw new ConfigError(`mcp-remote's ${file} is not in the expected format: ${error.message}`, {
        problem: "mcp_remote_invalid",
        file,
      });
    throw error;
  }
}

const AUTH_METHODS: readonly TokenEndpointAuthMethod[] = [
  "none",
  "client_secret_basic",
  "client_secret_post",
];

/** An expiry in epoch ms; a value that only makes sense in seconds is refused, not guessed at. */
function epochMs(value: number, field: string): number {
  // 1e11 ms is 1973; any real expires_at in ms is far above it, any in seconds far below.
  if (value < 1e11)
    throw new ConfigError(
      `mcp-remote's tokens.json has an implausible ${field} (${value}): not epoch milliseconds`,
      {
        problem: "mcp_remote_invalid",
        field,
      },
    );
  return value;
}

/**
 * The access token's expiry, conservatively: the earliest of what the file states (its
 * `expires_at`), what `expires_in` gives counted from the file's write time, and the token's
 * own `exp` claim when it is a JWT, minus IMPORT_EXPIRY_MARGIN_MS. Null only when nothing
 * states a lifetime. Pure.
 */
export function importedExpiry(
  tokens: { access_token: string; expires_in?: number; expires_at?: number },
  writtenAt: number,
): number | null {
  const candidates: number[] = [];
  if (tokens.expires_at !== undefined) candidates.push(epochMs(tokens.expires_at, "expires_at"));
  if (tokens.expires_in !== undefined) candidates.push(writtenAt + tokens.expires_in * 1000);
  const exp = peekJwtClaims(tokens.access_token)?.exp;
  if (exp !== undefined) candidates.push(exp * 1000);
  if (candidates.length === 0) return null;
  // Within [epoch, written + the longest lifetime accepted from a server]: dates every program can print.
  const latest = writtenAt + MAX_ACCESS_TOKEN_LIFETIME_S * 1000;
  return Math.max(0, Math.min(...candidates, latest) - IMPORT_EXPIRY_MARGIN_MS);
}

export interface ImportInput {
  name: string;
  files: McpRemoteFiles;
  discovery: DiscoveryResult;
  now: number;
}

/** Builds the connector record from mcp-remote's files and a fresh discovery. Pure. */
export function recordFromMcpRemote(input: ImportInput): ConnectorRecord {
  const { files, discovery, now } = input;
  const info = parse(clientInfoSchema, files.clientInfo, "client_info.json");
  const tokens = parse(tokensSchema, files.tokens, "tokens.json");
  const metadata = discovery.authorizationServer.metadata as AuthorizationServerMetadata;
  const issuer = discovery.authorizationServer.issuer;

  // mcp-remote stamps the issuer it registered with; a server that moved to another
  // authorization server would not know this client or accept these tokens.
  for (const [file, stamped] of [
    ["client_info.json", info.issuer],
    ["tokens.json", tokens.issuer],
  ] as const) {
    if (stamped !== undefined && !issuerMatches(issuer, stamped))
      throw new ConfigError(
        `mcp-remote's ${file} belongs to the authorization server ${stamped}, but the server now uses ${issuer}; log in instead`,
        { problem: "mcp_remote_issuer_mismatch", file },
      );
  }
  // The checks every token set from a server passes (type, b64token characters, length): a file
  // is no more trustworthy than the response it was written from.
  const problem = tokenResponseProblem(tokens);
  if (problem)
    throw new ConfigError(`mcp-remote's tokens.json cannot be used: ${problem}`, {
      problem: "mcp_remote_invalid",
      file: "tokens.json",
    });
  if (info.client_secret_expires_at && info.client_secret_expires_at * 1000 <= now)
    throw new ConfigError("the client secret mcp-remote registered has expired; log in instead", {
      problem: "mcp_remote_client_expired",
    });

  const stated = info.token_endpoint_auth_method;
  if (stated !== undefined && !(AUTH_METHODS as readonly string[]).includes(stated))
    throw new ConfigError(
      `mcp-remote's client uses token_endpoint_auth_method ${stated}, which Tokenkeeper does not support`,
      {
        problem: "mcp_remote_invalid",
        field: "token_endpoint_auth_method",
      },
    );
  const method: TokenEndpointAuthMethod =
    (stated as TokenEndpointAuthMethod | undefined) ??
    (info.client_secret ? chooseSecretAuthMethod(metadata) : "none");
  if (method !== "none" && !info.client_secret)
    throw new ConfigError(
      `mcp-remote's client uses ${method} but its client_info.json holds no client_secret`,
      {
        problem: "mcp_remote_invalid",
        field: "client_secret",
      },
    );

  const grants = info.grant_types ?? ["authorization_code"];
  const grant: GrantKind = grants.includes("authorization_code")
    ? "authorization_code"
    : grants.includes("urn:ietf:params:oauth:grant-type:device_code")
      ? "device_code"
      : grants.includes("client_credentials")
        ? "client_credentials"
        : "authorization_code";

  const client: ClientRegistration = {
    kind: "dynamic",
    clientId: info.client_id,
    ...(method !== "none" && info.client_secret ? { clientSecret: new Secret(info.client_secret) } : {}),
    tokenEndpointAuthMethod: method,
    ...(info.redirect_uris ? { redirectUris: info.redirect_uris } : {}),
    ...(info.client_secret_expires_at !== undefined
      ? { clientSecretExpiresAt: info.client_secret_expires_at }
      : {}),
  };
  const expiresAt = importedExpiry(tokens, files.tokensWrittenAt);
  const tokenSet: TokenSet = {
    accessToken: new Secret(tokens.access_token),
    tokenType: "Bearer",
    ...(tokens.refresh_token ? { refreshToken: new Secret(tokens.refresh_token) } : {}),
    ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
    expiresAt,
    // When mcp-remote wrote it: no later than the token arrived. Never in the future.
    obtainedAt: Math.min(files.tokensWrittenAt, now),
    ...(tokens.refresh_token ? { refreshTokenIssuedAt: Math.min(files.tokensWrittenAt, now) } : {}),
  };
  // What was granted, else what mcp-remote asked for (its fallback when the server named none).
  const scope = tokens.scope || tokens.requested_scope || undefined;
  return {
    schema: 1,
    name: input.name,
    grant,
    ...(scope ? { scope } : {}),
    server: {
      mcpUrl: discovery.mcpUrl,
      resource: discovery.resource,
      issuer,
      metadata,
      ...(discovery.legacy ? {} : { resourceMetadataUrl: discovery.protectedResource.url }),
    },
    client,
    tokens: tokenSet,
    state: initialState(),
    settings: {},
    createdAt: now,
    updatedAt: now,
  };
}
