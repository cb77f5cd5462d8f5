/**
 * THE LONG TEST. `npm test` runs it for 40 s (four token lifetimes, enough to see refresh-ahead
 * and rotation repeat); `npm run test:soak` runs it for 180 s.
 *
 * An unattended session against the real test bed with 10-second access tokens and rotating
 * refresh tokens: two MCP SDK clients call a tool every second for TOKENKEEPER_LONG_TEST_SECONDS
 * (default 40), one through the SDK adapter (OAuthClientProvider), one through createAuthFetch,
 * sharing one TokenManager over a file store. Expected:
 *   - zero failed calls, and no request ever refused by the MCP server;
 *   - the number of refreshes matches the token lifetime and the refresh-ahead policy;
 *   - every rotation persisted: the store's counts equal the server's, and the refresh token in
 *     the store is the live one (a new process refreshes with it, no reuse detected).
 *
 *   TOKENKEEPER_LONG_TEST_SECONDS=30 node --import tsx --test test/surfaces/long-run.test.ts
 *
 * @long: the test runner runs it in a lane of its own, beside the rest of the suite.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { systemClock } from "../../src/core/clock.js";
import type { TokenkeeperEvent } from "../../src/manager/events.js";
import { expiryMarginMs, refreshWindowMs } from "../../src/manager/refresh-policy.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/types.js";
import { createAuthFetch } from "../../src/surfaces/auth-fetch.js";
import { createSdkAuthProvider } from "../../src/surfaces/sdk-provider.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";

const SECONDS = Number(process.env.TOKENKEEPER_LONG_TEST_SECONDS ?? 40);
const ACCESS_TTL_S = 10;
const CALL_INTERVAL_MS = 1_000;

describe(`LONG RUN: ${SECONDS} s of ${ACCESS_TTL_S} s tokens through the SDK adapter and createAuthFetch`, () => {
  let bed: TestBed;
  let dir: string;
  let store: Store;
  before(async () => {
    assert.ok(
      Number.isFinite(SECONDS) && SECONDS >= 10,
      "TOKENKEEPER_LONG_TEST_SECONDS must be a number >= 10",
    );
    bed = await startTestBed({ accessTokenTtl: ACCESS_TTL_S });
    dir = await mkdtemp(join(tmpdir(), "tk-long-"));
    store = await openStore(pathToFileURL(join(dir, "state")).href, { env: {}, clock: systemClock });
  });
  after(async () => {
    await store.close();
    await bed.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("zero failed calls, refreshes as the lifetime dictates, every rotation persisted", {
    timeout: SECONDS * 1_000 + 120_000,
  }, async () => {
    const connected = await connectTestBed(bed, store, "long");
    const manager = new TokenManager({ store });
    const events: TokenkeeperEvent[] = [];
    manager.subscribe((e) => events.push(e));
    bed.as.resetCounters();
    bed.mcp.resetCounters();

    const viaProvider = new Client({ name: "long-sdk-provider", version: "1" });
    await viaProvider.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), {
        authProvider: createSdkAuthProvider(manager, "long"),
      }),
    );
    const viaFetch = new Client({ name: "long-auth-fetch", version: "1" });
    await viaFetch.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), { fetch: createAuthFetch(manager, "long") }),
    );

    const stats = { calls: 0, failures: [] as string[] };
    const loop = async (client: Client, label: string, offsetMs: number) => {
      await new Promise((r) => setTimeout(r, offsetMs));
      const until = Date.now() + SECONDS * 1_000;
      let i = 0;
      while (Date.now() < until) {
        const started = Date.now();
        stats.calls++;
        try {
          const result = await client.callTool({ name: "add", arguments: { a: i, b: 1 } });
          if (result.isError) stats.failures.push(`${label} #${i}: tool error`);
        } catch (error) {
          stats.failures.push(
            `${label} #${i}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
          );
        }
        i++;
        await new Promise((r) => setTimeout(r, Math.max(0, CALL_INTERVAL_MS - (Date.now() - started))));
      }
    };
    const startedAt = Date.now();
    await Promise.all([loop(viaProvider, "provider", 0), loop(viaFetch, "authFetch", CALL_INTERVAL_MS / 2)]);
    const elapsedMs = Date.now() - startedAt;
    await viaProvider.close();
    await viaFetch.close();
    await manager.close();

    // 1. Zero failed calls; the MCP server never had to refuse a token.
    assert.deepEqual(stats.failures, []);
    assert.ok(stats.calls >= SECONDS * 2 - 4, `${stats.calls} calls`);
    assert.equal(bed.mcp.counters.unauthorized, 0);

    // 2. Refreshes match the lifetime: a token is renewed once it is older than
    //    lifetime − expiry margin − refresh-ahead window (10 − 1 − 5 = 4 s), at the next call.
    const tokens = connected.tokens!;
    const renewAtAgeMs = ACCESS_TTL_S * 1_000 - expiryMarginMs(tokens) - refreshWindowMs(tokens);
    const refreshes = events.filter((e) => e.type === "refreshed").length;
    const fewest = Math.floor(elapsedMs / (renewAtAgeMs + CALL_INTERVAL_MS / 2 + 500)) - 1;
    const most = Math.ceil(elapsedMs / renewAtAgeMs) + 1;
    assert.ok(
      refreshes >= fewest && refreshes <= most,
      `${refreshes} refreshes in ${elapsedMs} ms, expected ${fewest}..${most}`,
    );
    assert.ok(
      refreshes >= Math.floor(elapsedMs / (ACCESS_TTL_S * 1_000)),
      "at least one refresh per lifetime",
    );
    assert.equal(
      bed.as.counters.refreshGrantsSucceeded,
      refreshes,
      "the server saw exactly the refreshes the manager made",
    );
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
    assert.equal(bed.as.counters.refreshTokenReuse, 0);

    // 3. Every rotation persisted: the store counted each one, and holds the live refresh token.
    const stored = (await store.get("long"))!.record;
    assert.equal(stored.state.refreshCount, refreshes);
    assert.equal(stored.state.rotationCount, refreshes, "the bed rotates on every refresh");
    assert.equal(events.filter((e) => e.type === "rotated").length, refreshes);
    const reopened = await openStore(pathToFileURL(join(dir, "state")).href, { env: {}, clock: systemClock });
    const fresh = new TokenManager({ store: reopened });
    await fresh.refreshNow("long");
    await fresh.close();
    await reopened.close();
    assert.equal(bed.as.counters.refreshGrantsSucceeded, refreshes + 1);
    assert.equal(bed.as.counters.refreshTokenReuse, 0, "the stored refresh token was the current one");

    console.log(
      `long run: ${elapsedMs} ms, ${stats.calls} calls, 0 failed, ${refreshes} refreshes (expected ${fewest}..${most}), ` +
        `${stored.state.rotationCount} rotations persisted`,
    );
  });
});
