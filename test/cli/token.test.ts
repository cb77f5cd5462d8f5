/**
 * `tokenkeeper token NAME`: the token on stdout and nothing else; errors on stderr with the
 * documented exit codes; inside `tokenkeeper run` it asks the run instead of opening the store.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Clock, systemClock } from "../../src/core/clock.js";
import { formatDuration } from "../../src/core/duration.js";
import { Secret } from "../../src/core/secret.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { updateRecord } from "../../src/store/update.js";
import { startTokenEndpoint } from "../../src/surfaces/token-endpoint-server.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { type Harness, startHarness } from "./unattended-harness.js";

describe("tokenkeeper token", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 30 });
    await h.connect("svc");
  });
  after(async () => {
    await h.close();
  });

  it("prints exactly the access token, and nothing else anywhere", async () => {
    const r = await h.cli(["token", "svc"]);
    assert.equal(r.code, 0, r.stderr);
    const stored = (await h.store.get("svc"))!.record.tokens!;
    assert.equal(r.stdout, `${stored.accessToken.reveal()}\n`);
    assert.equal(r.stderr, "");
    assert.ok(!r.stdout.includes(stored.refreshToken!.reveal()));
    // The token works at the MCP server.
    assert.ok(await mcpAccepts(h.bed.mcpUrl, r.stdout.trim()));
  });

  it("--json gives the token with its expiry, snake_case with an ISO-8601 UTC time", async () => {
    const r = await h.cli(["token", "svc", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const stored = (await h.store.get("svc"))!.record.tokens!;
    assert.deepEqual(JSON.parse(r.stdout), {
      connector: "svc",
      access_token: stored.accessToken.reveal(),
      token_type: stored.tokenType,
      expires_at: new Date(stored.expiresAt!).toISOString(),
    });
    assert.equal(r.stdout.trim().split("\n").length, 1);
  });

  it("refreshes a token that would not last --min-ttl", async () => {
    // The stored token has 8 s left; the caller needs 10 s.
    await updateRecord(h.store, "svc", (rec) => ({
      ...rec,
      tokens: { ...rec.tokens!, expiresAt: Date.now() + 8_000, obtainedAt: Date.now() - 22_000 },
    }));
    const before = (await h.store.get("svc"))!.record.tokens!.accessToken.reveal();
    const r = await h.cli(["token", "svc", "--min-ttl", "10s"]);
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(r.stdout.trim(), before);
    assert.equal(r.stdout.trim(), (await h.store.get("svc"))!.record.tokens!.accessToken.reveal());
    assert.equal(r.stderr, "");
  });

  it("lowers a --min-ttl no token from this server can meet, with a warning, instead of refreshing forever", async () => {
    const tokens = (await h.store.get("svc"))!.record.tokens!;
    // A 30 s token is fresh for the lowered --min-ttl (5-6 s, plus the refresh-ahead window and
    // the expiry margin) only for its first ~6 s. The command runs on a clock that starts at the
    // moment the stored token arrived (real time runs on from there, timers stay real), so how
    // long the case before took on a loaded machine cannot make it stale.
    const shift = Date.now() - tokens.obtainedAt;
    const justObtained: Clock = { now: () => Date.now() - shift, sleep: systemClock.sleep };
    const requests = h.bed.as.counters.tokenRequests;
    const r = await h.cli(["token", "svc", "--min-ttl", "1h"], { clock: justObtained });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${tokens.accessToken.reveal()}\n`);
    // The lifetime the command states is the stored one: 30 s by expires_in, less when the JWT's
    // exp (whole seconds, set when the server issued it) ends earlier, e.g. after a slow answer.
    const lifetime = tokens.expiresAt! - tokens.obtainedAt;
    assert.ok(lifetime > 20_000 && lifetime <= 30_000, `stored lifetime ${lifetime} ms`);
    const warned = /gets (\S+) tokens from its server; --min-ttl 1h lowered to (\d+)s\n/.exec(r.stderr);
    assert.ok(warned, r.stderr);
    assert.equal(warned[1], formatDuration(lifetime));
    // Half of what a just-obtained token stays fresh for (lifetime minus margin and window).
    const lowered = Number(warned[2]);
    assert.ok(lowered >= 4 && lowered <= 6, `lowered to ${lowered} s`);
    assert.ok(!r.stderr.includes(r.stdout.trim()));
    assert.equal(h.bed.as.counters.tokenRequests, requests, "the fresh token was good enough");
  });

  it("exits 75 with nothing on stdout when the token is stale and the token endpoint fails", async () => {
    await h.connect("stale");
    await updateRecord(h.store, "stale", (rec) => ({
      ...rec,
      tokens: { ...rec.tokens!, expiresAt: Date.now() - 1_000, obtainedAt: Date.now() - 31_000 },
    }));
    h.bed.as.failTokenEndpoint(1_000, "503");
    try {
      const r = await h.cli(["token", "stale", "--timeout", "1s"]);
      assert.equal(r.code, 75);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /transient/);
    } finally {
      h.bed.as.clearTokenEndpointFailures();
    }
  });

  it("exits 77 for a connector whose grant is gone, and 78 for an unknown connector or bad flags", async () => {
    await h.connect("gone");
    const rt = (await h.store.get("gone"))!.record.tokens!.refreshToken!;
    await h.bed.as.revokeGrantOf(rt.reveal());
    await updateRecord(h.store, "gone", (rec) => ({
      ...rec,
      tokens: { ...rec.tokens!, expiresAt: Date.now() - 1_000 },
    }));
    const r = await h.cli(["token", "gone"]);
    assert.equal(r.code, 77);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /reauth_required/);
    assert.ok(!r.stderr.includes(rt.reveal()));
    assert.equal((await h.cli(["token", "nobody"])).code, 78);
    assert.equal((await h.cli(["token"])).code, 78);
    assert.equal((await h.cli(["token", "svc", "--min-ttl", "later"])).code, 78);
  });

  it("inside a run, asks the run's endpoint and never opens the store", async () => {
    const manager = new TokenManager({ store: h.store });
    const endpoint = await startTokenEndpoint({ manager, connectors: ["svc", "gone"] });
    // A store URL that cannot be opened: the command must not try.
    const env = { ...endpoint.env(), TOKENKEEPER_STORE: "bogus://not-a-store" };
    try {
      const r = await h.cli(["token", "svc"], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${(await manager.getAccessToken("svc")).token.reveal()}\n`);

      const notInRun = await h.cli(["token", "stale"], { env });
      assert.equal(notInRun.code, 78);
      assert.match(notInRun.stderr, /not part of this run/);

      const dead = await h.cli(["token", "gone"], { env });
      assert.equal(dead.code, 77);
      assert.equal(dead.stdout, "");

      const wrongSecret = await h.cli(["token", "svc"], {
        env: { ...env, TOKENKEEPER_RUN_SECRET: "0".repeat(64) },
      });
      assert.equal(wrongSecret.code, 78);
      assert.equal(wrongSecret.stdout, "");
    } finally {
      await endpoint.close();
      await manager.close();
    }
  });

  it("the run endpoint refuses requests without the per-run secret", async () => {
    const manager = new TokenManager({ store: h.store });
    const endpoint = await startTokenEndpoint({ manager, connectors: ["svc"] });
    try {
      const none = await fetch(`${endpoint.url}/v1/token/svc`);
      assert.equal(none.status, 401);
      const body = await none.text();
      assert.ok(!body.includes((await h.store.get("svc"))!.record.tokens!.accessToken.reveal()));
      assert.ok(endpoint.url.startsWith("http://127.0.0.1:"));
      assert.ok(!new Secret(endpoint.secret).describe().includes(endpoint.secret));
    } finally {
      await endpoint.close();
      await manager.close();
    }
  });
});
