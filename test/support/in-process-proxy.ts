/**
 * The proxy started in this process on a pair of in-memory pipes, with an MCP SDK client on the
 * other end: for proxy tests that need a manual clock or an in-process server, where a child
 * process (test/surfaces/proxy-harness.ts) cannot show the behaviour.
 */
import { PassThrough } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { type ProxyHandle, type ProxyOptions, startProxy } from "../../src/surfaces/proxy/proxy.js";

export interface InProcessProxy {
  client: Client;
  proxy: ProxyHandle;
  /** The proxy's log lines (its stderr). */
  logs: string[];
  /** Ends the proxy's stdin, waits for it to finish, closes the client and the manager. */
  stop(): Promise<void>;
}

export async function startInProcessProxy(
  options: Omit<ProxyOptions, "stdin" | "stdout" | "log">,
  clientName: string,
): Promise<InProcessProxy> {
  const toProxy = new PassThrough();
  const fromProxy = new PassThrough();
  const logs: string[] = [];
  const proxy = startProxy({ ...options, stdin: toProxy, stdout: fromProxy, log: (line) => logs.push(line) });
  // The SDK's stdio transport is symmetric: on the client side it reads the proxy's stdout.
  const client = new Client({ name: clientName, version: "1.0.0" });
  await client.connect(new StdioServerTransport(fromProxy, toProxy));
  return {
    client,
    proxy,
    logs,
    async stop() {
      toProxy.end();
      await proxy.done;
      await client.close();
      await options.manager.close();
    },
  };
}
