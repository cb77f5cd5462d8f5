// The test bed: a real authorization server and a real MCP server protected by it, wired to each
// other, both on 127.0.0.1. Every integration test and the demo start from here.
import { type AuthServer, type AuthServerOptions, MCP_SCOPES, startAuthServer } from "./auth-server.js";
import { type McpServerOptions, type McpTestServer, startMcpServer } from "./mcp-server.js";

export type {
  AuthCounters,
  AuthServer,
  AuthServerOptions,
  GrantKind,
  JsonValue,
  RegisteredClient,
  TokenFaultKind,
  TokenFaultOptions,
} from "./auth-server.js";
export { MCP_SCOPES, startAuthServer } from "./auth-server.js";
export type { McpCounters, McpServerOptions, McpTestServer } from "./mcp-server.js";
export { startMcpServer } from "./mcp-server.js";
export { bigPayload } from "./mcp-tools.js";

export interface TestBedOptions extends Omit<AuthServerOptions, "port" | "resources"> {
  authPort?: number;
  mcpPort?: number;
  /** Options for the MCP server (issuer and port are filled in). */
  mcp?: Omit<McpServerOptions, "issuer" | "jwksUri" | "port">;
  /**
   * Make the MCP server URL the AS's default resource, so requests that name no `resource`
   * still get a token for it (default false: clients must send `resource`, as MCP requires).
   */
  mcpIsDefaultResource?: boolean;
}

export interface TestBed {
  as: AuthServer;
  mcp: McpTestServer;
  /** The MCP endpoint, which is also the resource indicator / token audience. */
  mcpUrl: string;
  issuer: string;
  close(): Promise<void>;
}

/**
 * Starts both servers. The AS needs the MCP URL (as a resource) and the MCP server needs the
 * issuer, so the AS starts first knowing no resource, then learns the MCP URL once it is bound.
 */
export async function startTestBed(opts: TestBedOptions = {}): Promise<TestBed> {
  const { authPort, mcpPort, mcp: mcpOpts, mcpIsDefaultResource, ...asOpts } = opts;
  const as = await startAuthServer({ ...asOpts, port: authPort });
  let mcp: McpTestServer;
  try {
    mcp = await startMcpServer({ ...mcpOpts, issuer: as.issuer, jwksUri: as.endpoints.jwks, port: mcpPort });
  } catch (err) {
    await as.close();
    throw err;
  }
  as.addResource(mcp.url, mcpOpts?.scopesSupported ?? MCP_SCOPES);
  if (mcpIsDefaultResource) as.setDefaultResource(mcp.url);
  return {
    as,
    mcp,
    mcpUrl: mcp.url,
    issuer: as.issuer,
    async close() {
      await Promise.allSettled([mcp.close(), as.close()]);
    },
  };
}
