/**
 * Lets `mcp-remote` start without a browser: it keeps its OAuth state in files under
 * MCP_REMOTE_CONFIG_DIR, named after an MD5 of the server URL (src/lib/utils.ts,
 * getServerUrlHash: the URL alone when no --resource, --header, --authorize-param,
 * --client-metadata-url or --token-endpoint is given), in a `mcp-remote-v1` folder. We write
 * the token set and client registration a real login against the bed produced, so it finds
 * usable tokens and connects at once. The bed's access tokens live long enough that it never
 * needs to refresh during the benchmark.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ConnectorRecord } from "../../src/core/record.js";

export function mcpRemoteHash(serverUrl: string): string {
  return createHash("md5").update(serverUrl).digest("hex");
}

/** The OAuth callback port mcp-remote derives from the hash (calculateDefaultPort). */
export function mcpRemoteCallbackPort(hash: string): number {
  return 3335 + (Number.parseInt(hash.slice(0, 4), 16) % 45816);
}

export async function seedMcpRemote(
  configDir: string,
  serverUrl: string,
  record: ConnectorRecord,
): Promise<void> {
  const tokens = record.tokens;
  if (!tokens?.expiresAt) throw new Error("the record has no access token with a known expiry");
  const hash = mcpRemoteHash(serverUrl);
  const dir = join(configDir, "mcp-remote-v1");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  await writeFile(
    join(dir, `${hash}_tokens.json`),
    JSON.stringify({
      access_token: tokens.accessToken.reveal(),
      token_type: tokens.tokenType,
      ...(tokens.refreshToken ? { refresh_token: tokens.refreshToken.reveal() } : {}),
      ...(tokens.scope ? { scope: tokens.scope } : {}),
      expires_in: Math.floor((tokens.expiresAt - now) / 1000),
      expires_at: tokens.expiresAt,
    }),
    { mode: 0o600 },
  );
  // Its cached registration must list the redirect URI it would use, or it throws it away.
  const redirect = `http://${process.platform === "win32" ? "127.0.0.1" : "localhost"}:${mcpRemoteCallbackPort(hash)}/oauth/callback`;
  await writeFile(
    join(dir, `${hash}_client_info.json`),
    JSON.stringify({
      client_id: record.client.clientId,
      redirect_uris: [redirect],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      client_name: "MCP CLI Proxy",
    }),
    { mode: 0o600 },
  );
}
