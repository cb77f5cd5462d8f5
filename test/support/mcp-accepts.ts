/** The MCP server's own verdict on an access token: an `initialize` with it must succeed. */
export async function mcpAccepts(mcpUrl: string, accessToken: string): Promise<boolean> {
  const res = await fetch(mcpUrl, {
    method: "POST",
    headers: {
      authorization: `Bearer ${accessToken}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "0" } },
    }),
  });
  await res.body?.cancel();
  return res.status === 200;
}
