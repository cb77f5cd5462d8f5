/**
 * The MCP SDK's OAuthClientProvider backed by Tokenkeeper, driven by the SDK's own
 * StreamableHTTPClientTransport against the real test bed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ReauthRequiredError, TransientError } from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { updateRecord } from "../../src/store/update.js";
import { createSdkAuthProvider, tokenkeeperTransportOptions } from "../../src/surfaces/sdk-provider.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";

async function plantBadToken(store: MemoryStore, name: string): Promise<void> {
  await updateRecord(store, name, (r) => ({
    ...r,
    tokens: { ...r.tokens!, accessToken: new Secret("not-a-valid-token") },
  }));
}

const settle = <T>(p: Promise<T>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe("TokenkeeperOAuthProvider (MCP SDK)", () => {
  let bed: TestBed;
  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3 });
  });
  after(async () => {
    await bed.close();
  });

  const setup = async (name: string) => {
    const store = new MemoryStore();
    await connectTestBed(bed, store, name);
    const manager = new TokenManager({ store });
    return { store, manager };
  };

  it("gives the SDK fresh tokens (expires_in from expiresAt, never the refresh token) across several lifetimes", async () => {
    const { manager } = await setup("sdk");
    const provider = createSdkAuthProvider(manager, "sdk");
    const handed = await provider.tokens();
    assert.equal(handed.refresh_token, undefined);
    assert.ok(handed.expires_in !== undefined && handed.expires_in > 0 && handed.expires_in <= 3);
    assert.equal(handed.token_type, "Bearer");

    const client = new Client({ name: "sdk-provider-test", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { authProvider: provider }));
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    const until = Date.now() + 5_000;
    let calls = 0;
    try {
      while (Date.now() < until) {
        const result = await client.callTool({ name: "echo", arguments: { text: `${calls++}` } });
        assert.notEqual(result.isError, true);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await client.close();
      await manager.close();
    }
    assert.ok(calls >= 30);
    assert.ok(
      bed.as.counters.refreshGrantsSucceeded - refreshes >= 3,
      "5 s of 3 s tokens were refreshed ahead",
    );
    assert.equal(bed.mcp.counters.unauthorized, 0, "no request ever went out with an expired token");
  });

  it("saveTokens persists with compare-and-set, counts a rotation, and keeps the refresh token a response omits", async () => {
    const { store, manager } = await setup("save");
    const provider = createSdkAuthProvider(manager, "save");
    await provider.tokens();
    const before = (await store.get("save"))!;
    await provider.saveTokens({
      access_token: "at-from-sdk-1",
      token_type: "bearer",
      expires_in: 60,
      refresh_token: "rt-from-sdk-1",
    });
    const after1 = (await store.get("save"))!;
    assert.equal(after1.version, before.version + 1);
    assert.equal(after1.record.tokens!.accessToken.reveal(), "at-from-sdk-1");
    assert.equal(after1.record.tokens!.refreshToken!.reveal(), "rt-from-sdk-1");
    assert.equal(after1.record.state.rotationCount, before.record.state.rotationCount + 1);
    assert.equal(
      (await provider.tokens()).access_token,
      "at-from-sdk-1",
      "the manager sees the saved token at once",
    );

    await provider.saveTokens({ access_token: "at-from-sdk-2", token_type: "Bearer", expires_in: 60 });
    const after2 = (await store.get("save"))!.record;
    assert.equal(
      after2.tokens!.refreshToken!.reveal(),
      "rt-from-sdk-1",
      "RFC 6749 §6: the old refresh token stays",
    );
    assert.equal(after2.state.rotationCount, after1.record.state.rotationCount);
    await manager.close();
  });

  it("invalidateCredentials('tokens') refreshes (once) instead of deleting the grant", async () => {
    const { store, manager } = await setup("inval");
    const provider = createSdkAuthProvider(manager, "inval");
    const first = await provider.tokens();
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    await provider.invalidateCredentials("tokens");
    await provider.invalidateCredentials("all");
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    const next = await provider.tokens();
    assert.notEqual(next.access_token, first.access_token);
    const record = (await store.get("inval"))!.record;
    assert.ok(record.tokens?.refreshToken, "the grant is still there");
    assert.equal(record.client.clientId, (await provider.clientInformation())!.client_id);
    await manager.close();
  });

  it("unattended, a refused token never opens a browser: a retryable error once the token is renewed", async () => {
    const { store, manager } = await setup("refused");
    await plantBadToken(store, "refused");
    let redirected = false;
    const provider = createSdkAuthProvider(manager, "refused", {
      onRedirect: () => {
        redirected = true;
      },
    });
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    const client = new Client({ name: "sdk-refused", version: "1" });
    const error = await settle(
      client.connect(new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { authProvider: provider })),
    );
    assert.ok(error instanceof TransientError, `got ${String(error)}`);
    assert.equal(redirected, false);
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    // Retrying the call works, with the renewed token.
    const again = new Client({ name: "sdk-refused", version: "1" });
    await again.connect(new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { authProvider: provider }));
    await again.close();
    await manager.close();
  });

  it("unattended, a dead grant is a ReauthRequiredError at once", async () => {
    const { store, manager } = await setup("dead");
    await bed.as.revokeGrantOf((await store.get("dead"))!.record.tokens!.refreshToken!.reveal());
    await plantBadToken(store, "dead");
    const rejected = bed.as.counters.rejectedRefreshTokens;
    const client = new Client({ name: "sdk-dead", version: "1" });
    const started = Date.now();
    const error = await settle(
      client.connect(
        new StreamableHTTPClientTransport(new URL(bed.mcpUrl), {
          authProvider: createSdkAuthProvider(manager, "dead"),
        }),
      ),
    );
    assert.ok(error instanceof ReauthRequiredError, `got ${String(error)}`);
    assert.equal(error.reason, "invalid_grant");
    assert.ok(Date.now() - started < 2_000);
    assert.equal(bed.as.counters.rejectedRefreshTokens, rejected + 1);
    await manager.close();
  });

  it("with tokenkeeperTransportOptions, a refused token is refreshed and the call retried below the transport", async () => {
    const { store, manager } = await setup("both");
    await plantBadToken(store, "both");
    const refreshes = bed.as.counters.refreshGrantsSucceeded;
    const client = new Client({ name: "sdk-both", version: "1" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), tokenkeeperTransportOptions(manager, "both")),
    );
    const result = await client.callTool({ name: "echo", arguments: { text: "ok" } });
    assert.notEqual(result.isError, true);
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    await client.close();
    await manager.close();
  });

  it("a grant revoked while an SDK client is busy: ReauthRequiredError within 2 s, one refused refresh, then silence", async () => {
    const { manager } = await setup("mid");
    const client = new Client({ name: "sdk-mid", version: "1" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), {
        authProvider: createSdkAuthProvider(manager, "mid"),
      }),
    );
    await client.callTool({ name: "echo", arguments: { text: "warm" } });
    const counters = {
      requests: bed.as.counters.tokenRequests,
      rejected: bed.as.counters.rejectedRefreshTokens,
    };
    await bed.as.revokeAllGrants();
    const revokedAt = Date.now();
    let error: unknown;
    let after = 0;
    while (Date.now() - revokedAt < 5_000) {
      error = await settle(client.callTool({ name: "echo", arguments: { text: "x" } }));
      if (error) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const elapsed = Date.now() - revokedAt;
    assert.ok(error instanceof ReauthRequiredError, `got ${String(error)}`);
    assert.ok(elapsed < 2_000, `${elapsed} ms`);
    // Keep calling for a second: every call fails at once, and the AS hears nothing more.
    for (let i = 0; i < 10; i++) {
      assert.ok(
        (await settle(client.callTool({ name: "echo", arguments: { text: "y" } }))) instanceof
          ReauthRequiredError,
      );
      after++;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(after, 10);
    assert.equal(bed.as.counters.rejectedRefreshTokens - counters.rejected, 1);
    assert.equal(bed.as.counters.tokenRequests - counters.requests, 1);
    console.log(`SDK client got ReauthRequiredError ${elapsed} ms after the revocation`);
    await client.close();
    await manager.close();
  });
});
