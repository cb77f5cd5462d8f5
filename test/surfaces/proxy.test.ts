/**
 * `tokenkeeper proxy` end to end: an SDK client over stdio, the real CLI as a child process, the
 * bed's real MCP server and authorization server. Asserts on what the client sees and on the
 * servers' own counters.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type Home, homeWithConnector, startFaultyFront, startProxy, textOf } from "./proxy-harness.js";

let bed: TestBed;

before(async () => {
  bed = await startTestBed();
});
after(async () => {
  await bed.close();
});

describe("tokenkeeper proxy relays MCP both ways", () => {
  let home: Home;
  before(async () => {
    home = await homeWithConnector(bed, "bed");
  });
  after(async () => {
    await home.cleanup();
  });

  it("lists tools, calls tools, relays progress and answers server-to-client requests", async () => {
    const proxy = await startProxy(home, "bed");
    try {
      const { client } = proxy;
      assert.equal(client.getServerVersion()?.name, "tokenkeeper-test-bed");
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === "echo"));
      assert.ok(tools.tools.some((t) => t.name === "ask_client"));

      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "hello" } })), "hello");
      assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 40 } })), "42");

      const progress: number[] = [];
      const slow = await client.callTool({ name: "slow", arguments: { steps: 4, delayMs: 30 } }, undefined, {
        onprogress: (p) => progress.push(p.progress),
      });
      assert.equal(textOf(slow), "done after 4 steps");
      // The SDK client handles notifications a microtask later than responses, so a last progress
      // notification that reaches it in the same stdio read as the result is dropped by the
      // client itself (the same happens behind any stdio proxy). All others arrive, in order.
      assert.deepEqual(progress.slice(0, 3), [1, 2, 3]);

      const elicited = JSON.parse(
        textOf(await client.callTool({ name: "ask_client", arguments: { question: "ok?" } })),
      );
      assert.deepEqual(elicited, { action: "accept", content: { answer: "yes" } });
      const sampled = JSON.parse(
        textOf(
          await client.callTool({ name: "ask_client", arguments: { question: "hi", kind: "sampling" } }),
        ),
      );
      assert.equal(sampled.content.text, "sampled: hi");

      const big = textOf(await client.callTool({ name: "big", arguments: { bytes: 100 * 1024 } }));
      assert.equal(big.length, 100 * 1024);
      assert.equal(bed.mcp.counters.sessions >= 1, true);
    } finally {
      await proxy.close();
    }
  });

  it("fails only the call that needs a scope the connector lacks, with the login command", async () => {
    const proxy = await startProxy(home, "bed");
    try {
      const { client } = proxy;
      await assert.rejects(
        client.callTool({ name: "admin_echo", arguments: { text: "x" } }),
        (e: unknown) =>
          e instanceof McpError &&
          e.code === -32030 &&
          /insufficient_scope/.test(e.message) &&
          /tokenkeeper login .* --scope '[^']*mcp:admin[^']*'/.test(e.message),
      );
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "ok" } })), "ok");
      assert.match(proxy.stderr(), /"reason":"insufficient_scope"/);
    } finally {
      await proxy.close();
    }
  });

  it("takes a URL and finds the connector logged in to it", async () => {
    const proxy = await startProxy(home, bed.mcpUrl);
    try {
      assert.equal(
        textOf(await proxy.client.callTool({ name: "echo", arguments: { text: "by url" } })),
        "by url",
      );
    } finally {
      await proxy.close();
    }
  });

  it("answers a malformed response with an error for that call and keeps running", async () => {
    const front = await startFaultyFront(bed.mcpUrl);
    const faulty = await homeWithConnector(bed, "faulty", front.url);
    const proxy = await startProxy(faulty, "faulty");
    try {
      const { client } = proxy;
      for (const text of ["malformed-json", "malformed-sse"]) {
        const started = Date.now();
        await assert.rejects(
          client.callTool({ name: "echo", arguments: { text } }),
          (e: unknown) => e instanceof McpError && e.code === -32032 && /malformed/.test(e.message),
        );
        assert.ok(Date.now() - started < 2_000, "answered promptly");
        assert.equal(
          textOf(await client.callTool({ name: "echo", arguments: { text: "still here" } })),
          "still here",
        );
      }
      assert.equal(front.counts.malformed, 2);
    } finally {
      await proxy.close();
      await front.close();
      await faulty.cleanup();
    }
  });
});
