/**
 * `tokenkeeper/mcp`: plugging Tokenkeeper into the MCP TypeScript SDK. The provider implements
 * the SDK's OAuthClientProvider; in unattended mode it never opens a browser and throws
 * ReauthRequiredError instead.
 */
export {
  createSdkAuthProvider,
  type SdkProviderOptions,
  TokenkeeperOAuthProvider,
  tokenkeeperTransportOptions,
} from "./surfaces/sdk-provider.js";
