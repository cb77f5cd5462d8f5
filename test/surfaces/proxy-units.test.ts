/**
 * The proxy's pure parts: what a failure means for the client, the bounded pending set, the
 * body watcher, header flags and the configuration snippets.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { parseHeaders } from "../../src/cli/commands/proxy.js";
import { ConfigError, ReauthRequiredError } from "../../src/core/errors.js";
import { watchBody } from "../../src/surfaces/proxy/body.js";
import { configSnippet } from "../../src/surfaces/proxy/config.js";
import {
  classifyUpstreamError,
  errorResponse,
  lossError,
  PROXY_ERROR,
} from "../../src/surfaces/proxy/errors.js";
import { PendingRequests } from "../../src/surfaces/proxy/pending.js";
import { runCliInProcess } from "../support/run-cli.js";

const where = "https://mcp.example.test/mcp";

describe("what a failure means for the client", () => {
  it("maps re-authorization to its own code, with the fix in the message", () => {
    const error = new ReauthRequiredError({
      connector: "demo",
      reason: "invalid_grant",
      since: 0,
      action: "run `tokenkeeper login https://mcp.example.test/mcp --name demo`",
    });
    const answer = errorResponse(7, error, { status: "skipped" });
    assert.equal(answer.id, 7);
    assert.equal(answer.error.code, PROXY_ERROR.reauthRequired);
    assert.match(
      answer.error.message,
      /^tokenkeeper proxy: connector "demo" needs a human to re-authorize: invalid_grant\. run `tokenkeeper login/,
    );
    assert.deepEqual(answer.error.data, { status: "skipped" });
  });

  it("tells an unreachable server from a malformed answer from an HTTP refusal", () => {
    const refused = Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } });
    const down = classifyUpstreamError(refused, { where, method: "tools/call" });
    assert.equal(down.code, "transient");
    assert.match(down.message, /cannot reach the remote MCP server .* \(ECONNREFUSED\)/);

    const garbled = classifyUpstreamError(new SyntaxError("Unexpected end of JSON input"), {
      where,
      method: "tools/call",
    });
    assert.equal(garbled.code, "protocol_error");
    assert.match(garbled.message, /malformed answer to "tools\/call"/);

    assert.equal(classifyUpstreamError(new StreamableHTTPError(503, "busy"), { where }).code, "transient");
    assert.equal(
      classifyUpstreamError(new StreamableHTTPError(400, "bad"), { where }).code,
      "protocol_error",
    );
  });

  it("says why an answer will never come", () => {
    assert.match(
      lossError("connection_lost", { where, method: "tools/call", cause: "ECONNRESET" }).message,
      /was lost while "tools\/call" was in flight \(ECONNRESET\).*retry/,
    );
    assert.match(
      lossError("session_lost", { where, method: "tools/call" }).message,
      /ended the session.*new session: retry/,
    );
    assert.equal(
      lossError("no_answer", { where, method: "x", lastProblem: "not a valid JSON-RPC message" }).code,
      "protocol_error",
    );
    assert.equal(lossError("no_answer", { where, method: "x" }).code, "transient");
  });
});

describe("the pending set", () => {
  it('refuses past its bound and tells 1 from "1"', () => {
    const pending = new PendingRequests(2);
    assert.equal(pending.add(1, "a", 0), true);
    assert.equal(pending.add("1", "b", 0), true);
    assert.equal(pending.add(2, "c", 0), false);
    assert.equal(pending.take(1)?.method, "a");
    assert.equal(pending.add(1, "a", 0), true);
    assert.equal(pending.add(1, "again", 0), false, "an id already in flight");
    assert.deepEqual(new Set(pending.drain().map((p) => p.id)), new Set(["1", 1]));
    assert.equal(pending.size, 0);
  });
});

describe("watchBody", () => {
  it("passes the bytes through and reports a clean end once", async () => {
    let ends = 0;
    let endError: unknown = "unset";
    const watched = watchBody(new Response("hello"), (error) => {
      ends++;
      endError = error;
    });
    assert.equal(await watched.text(), "hello");
    assert.equal(ends, 1);
    assert.equal(endError, undefined);
  });

  it("reports a broken stream with its error", async () => {
    let endError: unknown;
    const broken = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("par"));
        controller.error(new Error("socket hang up"));
      },
    });
    const watched = watchBody(new Response(broken, { status: 200 }), (error) => {
      endError = error;
    });
    await assert.rejects(watched.text());
    assert.match(String(endError), /socket hang up/);
  });
});

describe("proxy flags and configuration", () => {
  it("parses --header and keeps the token and transport headers for itself", () => {
    assert.deepEqual(parseHeaders(["X-Team: a b", "X-Empty:"]), { "X-Team": "a b", "X-Empty": "" });
    assert.throws(() => parseHeaders(["Authorization: Bearer x"]), ConfigError);
    assert.throws(() => parseHeaders(["Mcp-Session-Id: 1"]), ConfigError);
    assert.throws(() => parseHeaders(["no colon"]), ConfigError);
  });

  it("builds client snippets that launch the proxy", () => {
    const input = {
      serverName: "work",
      args: ["proxy", "work", "--header", "X-Team: a b"],
      env: { TOKENKEEPER_HOME: "/srv/tk" },
    };
    const desktop = JSON.parse(configSnippet("claude-desktop", input).text);
    assert.deepEqual(desktop, {
      mcpServers: { work: { command: "tokenkeeper", args: input.args, env: input.env } },
    });
    assert.deepEqual(JSON.parse(configSnippet("cursor", input).text), desktop);
    assert.equal(
      configSnippet("claude-code", input).text,
      "claude mcp add work -e TOKENKEEPER_HOME=/srv/tk -- tokenkeeper proxy work --header 'X-Team: a b'",
    );
  });

  it("--print-config --json prints the snippets for a connector", async () => {
    const { code, stdout } = await runCliInProcess(
      ["proxy", "work", "--print-config", "--json", "--client", "cursor", "--transport", "sse"],
      { env: { TOKENKEEPER_STORE: "file:///nonexistent/tokenkeeper-test-store" } },
    );
    assert.equal(code, 0);
    const printed = JSON.parse(stdout);
    assert.deepEqual(printed.args, ["proxy", "work", "--transport", "sse"]);
    assert.equal(printed.env.TOKENKEEPER_STORE, "file:///nonexistent/tokenkeeper-test-store");
    assert.equal(printed.snippets.length, 1);
    assert.equal(printed.snippets[0].client, "cursor");
  });
});
