/**
 * createAuthFetch against the real test bed: a refused token costs exactly one refresh and one
 * retry (the servers' own counters say so), a missing scope is a ReauthRequiredError naming it,
 * and a body that cannot be replayed is never sent twice.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ReauthRequiredError, TokenkeeperError, TransientError } from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { updateRecord } from "../../src/store/update.js";
import { createAuthFetch } from "../../src/surfaces/auth-fetch.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";

const INITIALIZE = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "auth-fetch-test", version: "1" },
  },
});
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

/** Replaces the stored access token with one the MCP server will refuse (401 invalid_token). */
async function plantBadToken(store: MemoryStore, name: string): Promise<void> {
  await updateRecord(store, name, (r) => ({
    ...r,
    tokens: { ...r.tokens!, accessToken: new Secret("not-a-valid-token") },
  }));
}

describe("createAuthFetch", () => {
  let bed: TestBed;
  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 60 });
  });
  after(async () => {
    await bed.close();
  });

  const setup = async (name: string, scope?: string) => {
    const store = new MemoryStore();
    await connectTestBed(bed, store, name, scope ? { scope } : {});
    const manager = new TokenManager({ store });
    return { store, manager };
  };

  it("on a 401 invalid_token refreshes once and retries once (server counters)", async () => {
    const { store, manager } = await setup("r401");
    await plantBadToken(store, "r401");
    bed.mcp.resetCounters();
    const refreshes = bed.as.counters.refreshGrantsSucceeded;

    const response = await createAuthFetch(manager, "r401")(bed.mcpUrl, {
      method: "POST",
      headers: MCP_HEADERS,
      body: INITIALIZE,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(bed.mcp.counters.unauthorized, 1, "the planted token was refused once");
    assert.equal(bed.mcp.counters.requests, 1, "the retry went through once");
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1, "exactly one refresh");
    await manager.close();
  });

  it("50 concurrent requests refused with one token share a single refresh", async () => {
    const { store, manager } = await setup("herd");
    await plantBadToken(store, "herd");
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    const authFetch = createAuthFetch(manager, "herd");
    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        authFetch(bed.mcpUrl, { method: "POST", headers: MCP_HEADERS, body: INITIALIZE }),
      ),
    );
    for (const r of responses) {
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    await manager.close();
  });

  it("a 403 insufficient_scope is a ReauthRequiredError naming the scope, and the connector keeps working", async () => {
    const { manager } = await setup("narrow", "mcp:tools offline_access");
    const client = new Client({ name: "scope-test", version: "1" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { fetch: createAuthFetch(manager, "narrow") }),
    );
    try {
      const refused = await client.callTool({ name: "admin_echo", arguments: { text: "hi" } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(refused instanceof ReauthRequiredError, `got ${String(refused)}`);
      assert.equal(refused.reason, "insufficient_scope");
      assert.equal(refused.fields.requiredScope?.includes("mcp:admin"), true);
      assert.match(refused.message, /mcp:admin/);
      assert.match(refused.action, /--scope '[^']*mcp:admin[^']*'`$/);
      // Other tools still work: a missing scope is not a dead grant.
      const ok = await client.callTool({ name: "echo", arguments: { text: "still here" } });
      assert.notEqual(ok.isError, true);
      assert.equal((await manager.store.get("narrow"))!.record.state.health, "ok");
    } finally {
      await client.close();
      await manager.close();
    }
  });

  it("never sends a non-replayable (stream) body twice: refreshes, then a typed error", async () => {
    const { store, manager } = await setup("stream");
    await plantBadToken(store, "stream");
    bed.mcp.resetCounters();
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(INITIALIZE));
        controller.close();
      },
    });
    const error = await createAuthFetch(manager, "stream")(bed.mcpUrl, {
      method: "POST",
      headers: MCP_HEADERS,
      body,
      duplex: "half",
    } as RequestInit).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof TransientError, `got ${String(error)}`);
    assert.equal(bed.mcp.counters.unauthorized, 1);
    assert.equal(bed.mcp.counters.requests, 0, "the body was not sent again");
    assert.equal(
      bed.as.counters.refreshGrantsSucceeded,
      refreshes + 1,
      "the token was renewed for the next call",
    );
    // The next (replayable) request uses the renewed token without another refresh.
    const next = await createAuthFetch(manager, "stream")(bed.mcpUrl, {
      method: "POST",
      headers: MCP_HEADERS,
      body: INITIALIZE,
    });
    assert.equal(next.status, 200);
    await next.body?.cancel();
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    await manager.close();
  });

  it("a fresh token refused again means the grant no longer covers the resource: ReauthRequiredError, one refresh", async () => {
    const { manager } = await setup("refused");
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    let sent = 0;
    const alwaysRefuses = async () => {
      sent++;
      return new Response("{}", {
        status: 401,
        headers: { "www-authenticate": 'Bearer error="invalid_token"' },
      });
    };
    const error = await createAuthFetch(manager, "refused", { fetch: alwaysRefuses })(bed.mcpUrl, {
      method: "POST",
      body: "{}",
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ReauthRequiredError);
    assert.equal(error.reason, "token_rejected");
    assert.equal(sent, 2, "one request, one retry");
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    // Recorded: every later call fails at once, without the servers.
    const requests = bed.as.counters.tokenRequests;
    await assert.rejects(
      createAuthFetch(manager, "refused")(bed.mcpUrl, { method: "POST", body: "{}" }),
      ReauthRequiredError,
    );
    assert.equal(sent, 2);
    assert.equal(bed.as.counters.tokenRequests, requests);
    await manager.close();
  });

  it("a revoked grant surfaces as ReauthRequiredError after a single refresh attempt, never a generic error", async () => {
    const { store, manager } = await setup("gone");
    await bed.as.revokeGrantOf((await store.get("gone"))!.record.tokens!.refreshToken!.reveal());
    await plantBadToken(store, "gone");
    const rejected = bed.as.counters.rejectedRefreshTokens;
    const error = await createAuthFetch(manager, "gone")(bed.mcpUrl, {
      method: "POST",
      headers: MCP_HEADERS,
      body: INITIALIZE,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof ReauthRequiredError, `got ${String(error)}`);
    assert.equal(error.reason, "invalid_grant");
    assert.equal(bed.as.counters.rejectedRefreshTokens, rejected + 1);
    await manager.close();
  });

  it("fails at once for a connector recorded as dead, even while its access token has time left", async () => {
    const { store, manager } = await setup("dead-early");
    await bed.as.revokeGrantOf((await store.get("dead-early"))!.record.tokens!.refreshToken!.reveal());
    // The grant is found dead by a refresh (keepalive, another job…) while the access token still has 60 s.
    await assert.rejects(manager.refreshNow("dead-early"), ReauthRequiredError);
    const left = (await store.get("dead-early"))!.record.tokens!.expiresAt! - Date.now();
    assert.ok(left > 30_000);
    const requests = bed.as.counters.tokenRequests;
    for (const attempt of [
      () => manager.getAccessToken("dead-early"),
      () => manager.getAccessToken("dead-early"),
    ]) {
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof TokenkeeperError && error.code === "reauth_required");
    }
    // A process that starts later learns it from the store, without asking the server.
    const fresh = new TokenManager({ store });
    await assert.rejects(fresh.getAccessToken("dead-early"), ReauthRequiredError);
    assert.equal(bed.as.counters.tokenRequests, requests);
    await manager.close();
  });
});
