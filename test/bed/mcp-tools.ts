// The bed's MCP server logic: one McpServer per session, with tools that exercise what a
// token-keeping proxy must carry: plain calls, progress notifications, big payloads, a scope-gated
// tool, and a server-to-client request.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import {
  type CallToolResult,
  CreateMessageResultSchema,
  ElicitResultSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { sleep } from "./http-util.js";

export interface ToolHooks {
  /** Called once per tool invocation, before the tool runs. */
  onToolCall(name: string): void;
  /** Scopes a tool needs (checked again here, besides the HTTP-level 403). */
  requiredScopes(name: string): readonly string[];
}

const text = (t: string): CallToolResult => ({ content: [{ type: "text", text: t }] });
const failure = (t: string): CallToolResult => ({ content: [{ type: "text", text: t }], isError: true });

/** A deterministic ASCII payload of exactly `bytes` bytes. */
export function bigPayload(bytes: number): string {
  const unit = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n";
  return unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes);
}

export function createMcpServer(hooks: ToolHooks): McpServer {
  const server = new McpServer(
    { name: "tokenkeeper-test-bed", version: "1.0.0" },
    { capabilities: { tools: {} } },
  );

  server.registerTool(
    "echo",
    { description: "Returns its text.", inputSchema: { text: z.string() } },
    async ({ text: t }) => {
      hooks.onToolCall("echo");
      return text(t);
    },
  );

  server.registerTool(
    "add",
    { description: "Adds two numbers.", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => {
      hooks.onToolCall("add");
      return text(String(a + b));
    },
  );

  server.registerTool(
    "slow",
    {
      description: "Waits `steps` × `delayMs`, reporting progress after each step when asked to.",
      inputSchema: { steps: z.number().int().min(0).max(1000), delayMs: z.number().int().min(0).max(60_000) },
    },
    async ({ steps, delayMs }, extra) => {
      hooks.onToolCall("slow");
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await sleep(delayMs, extra.signal);
        if (extra.signal.aborted) return failure("cancelled");
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken, progress: i, total: steps, message: `step ${i}/${steps}` },
          });
        }
      }
      return text(`done after ${steps} steps`);
    },
  );

  server.registerTool(
    "admin_echo",
    { description: "Returns its text; needs the mcp:admin scope.", inputSchema: { text: z.string() } },
    async ({ text: t }, extra) => {
      hooks.onToolCall("admin_echo");
      // Defence in depth: the HTTP layer already answered 403 for tokens lacking the scope.
      const granted = new Set(extra.authInfo?.scopes ?? []);
      const missing = hooks.requiredScopes("admin_echo").filter((s) => !granted.has(s));
      if (missing.length) return failure(`missing scope ${missing.join(" ")}`);
      return text(`admin: ${t}`);
    },
  );

  server.registerTool(
    "ask_client",
    {
      description:
        "Sends a server-to-client request (elicitation/create or sampling/createMessage) and returns the client's answer as JSON.",
      inputSchema: { question: z.string(), kind: z.enum(["elicitation", "sampling"]).optional() },
    },
    async ({ question, kind }, extra) => {
      hooks.onToolCall("ask_client");
      try {
        const answer =
          kind === "sampling"
            ? await extra.sendRequest(
                {
                  method: "sampling/createMessage",
                  params: {
                    messages: [{ role: "user", content: { type: "text", text: question } }],
                    maxTokens: 100,
                  },
                },
                CreateMessageResultSchema,
              )
            : await extra.sendRequest(
                {
                  method: "elicitation/create",
                  params: {
                    message: question,
                    requestedSchema: {
                      type: "object",
                      properties: { answer: { type: "string" } },
                      required: ["answer"],
                    },
                  },
                },
                ElicitResultSchema,
              );
        return text(JSON.stringify(answer));
      } catch (err) {
        return failure(`client request failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
  );

  server.registerTool(
    "big",
    {
      description: "Returns `bytes` bytes of text (for payload benchmarks).",
      inputSchema: {
        bytes: z
          .number()
          .int()
          .min(0)
          .max(50 * 1024 * 1024),
      },
    },
    async ({ bytes }) => {
      hooks.onToolCall("big");
      return text(bigPayload(bytes));
    },
  );

  server.registerTool(
    "whoami",
    { description: "Describes the access token the request carried." },
    async (extra) => {
      hooks.onToolCall("whoami");
      const auth = extra.authInfo;
      return text(
        JSON.stringify({
          clientId: auth?.clientId,
          scopes: auth?.scopes,
          expiresAt: auth?.expiresAt,
          ...auth?.extra,
        }),
      );
    },
  );

  return server;
}
