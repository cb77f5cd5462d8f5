/**
 * The proxy's life around the session: clean shutdown, a server that forgets the session, a
 * server that goes down and comes back, the legacy HTTP+SSE transport. The proxy runs as the
 * real CLI child process; the bed's MCP server is really stopped and restarted.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type Home, homeWithConnector, spawnRaw, startProxy, textOf } from "./proxy-harness.js";

const UNAVAILABLE = -32031;
const REFUSED = -32033;

let bed: TestBed;
let home: Home;

before(async () => {
  bed = await startTestBed();
  home = await homeWithConnector(bed, "bed");
});
after(async () => {
  await home.cleanup();
  await bed.close();
});

describe("tokenkeeper proxy shuts down cleanly", () => {
  it("exits 0 soon after the client closes stdin", async () => {
    const raw = spawnRaw(home, "bed");
    await raw.initialize();
    const echo = await raw.request("tools/call", { name: "echo", arguments: { text: "x" } });
    assert.equal(echo.result?.content !== undefined, true);
    const closedAt = Date.now();
    raw.child.stdin!.end();
    const exit = await raw.exited;
    assert.equal(exit.code, 0, raw.stderr());
    assert.ok(Date.now() - closedAt < 2_500, `took ${Date.now() - closedAt} ms`);
    assert.match(raw.stderr(), /shutting down \(the client closed stdin\)/);
  });

  it("on SIGTERM answers the call in flight and exits 0", async () => {
    const raw = spawnRaw(home, "bed");
    await raw.initialize();
    raw.send({
      id: "slow-1",
      method: "tools/call",
      params: { name: "slow", arguments: { steps: 100, delayMs: 100 } },
    });
    await new Promise((r) => setTimeout(r, 300));
    raw.child.kill("SIGTERM");
    const answer = await raw.waitFor((m) => m.id === "slow-1", 3_000);
    assert.equal(answer.error?.code, REFUSED);
    assert.match(answer.error!.message, /shutting down/);
    const exit = await raw.exited;
    assert.equal(exit.code, 0, raw.stderr());
  });
});

describe("tokenkeeper proxy across session loss and server restarts", () => {
  it("opens a new session when the server forgets it, without the client noticing", async () => {
    const proxy = await startProxy(home, "bed");
    try {
      const { client } = proxy;
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "a" } })), "a");
      const sessions = bed.mcp.counters.sessions;
      await bed.mcp.dropSessions();
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "b" } })), "b");
      assert.equal(bed.mcp.counters.sessions, sessions + 1);
      await proxy.waitForStderr(/session re-established/);
    } finally {
      await proxy.close();
    }
  });

  it("fails calls clearly while the server is down, then recovers when it is back", async () => {
    const proxy = await startProxy(home, "bed");
    try {
      const { client } = proxy;
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "up" } })), "up");

      // A call in flight when the server dies gets an error, not silence.
      const inFlight = client.callTool({ name: "slow", arguments: { steps: 50, delayMs: 100 } });
      await new Promise((r) => setTimeout(r, 200));
      const stoppedAt = Date.now();
      await bed.mcp.stop();
      await assert.rejects(
        inFlight,
        (e: unknown) =>
          e instanceof McpError && e.code === UNAVAILABLE && /was lost|without answering/.test(e.message),
      );
      assert.ok(Date.now() - stoppedAt < 2_000);

      // Calls while it is down: a prompt, clear error each time.
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        await assert.rejects(
          client.callTool({ name: "echo", arguments: { text: "down" } }),
          (e: unknown) =>
            e instanceof McpError &&
            e.code === UNAVAILABLE &&
            /cannot reach the remote MCP server/.test(e.message),
        );
        assert.ok(Date.now() - started < 2_000);
      }

      await bed.mcp.restart();
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "back" } })), "back");
      const tools = await client.listTools();
      assert.ok(tools.tools.length > 0);
    } finally {
      await bed.mcp.restart();
      await proxy.close();
    }
  });
});

describe("tokenkeeper proxy over the legacy HTTP+SSE transport", () => {
  let sseHome: Home;
  before(async () => {
    sseHome = await homeWithConnector(bed, "legacy", bed.mcp.sseUrl);
  });
  after(async () => {
    await sseHome.cleanup();
  });

  for (const transport of ["sse", "auto"]) {
    it(`relays calls and server-to-client requests (--transport ${transport})`, async () => {
      const proxy = await startProxy(sseHome, "legacy", { args: ["--transport", transport] });
      try {
        const { client } = proxy;
        assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "sse" } })), "sse");
        const asked = JSON.parse(
          textOf(await client.callTool({ name: "ask_client", arguments: { question: "q" } })),
        );
        assert.equal(asked.action, "accept");
        if (transport === "auto") await proxy.waitForStderr(/falling back to HTTP\+SSE/);
      } finally {
        await proxy.close();
      }
    });
  }

  it("reconnects after the server restarts", async () => {
    const proxy = await startProxy(sseHome, "legacy", { args: ["--transport", "sse"] });
    try {
      const { client } = proxy;
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "1" } })), "1");
      await bed.mcp.stop();
      await assert.rejects(
        client.callTool({ name: "echo", arguments: { text: "2" } }),
        (e: unknown) => e instanceof McpError && e.code === UNAVAILABLE,
      );
      await bed.mcp.restart();
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "3" } })), "3");
    } finally {
      await bed.mcp.restart();
      await proxy.close();
    }
  });
});
