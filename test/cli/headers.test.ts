/**
 * `tokenkeeper headers NAME`: the JSON object a headersHelper prints, the same token and exit
 * codes as `token`, and a fresh token served from one store read, never from the server.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { updateRecord } from "../../src/store/update.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { type Harness, startHarness } from "./unattended-harness.js";

describe("tokenkeeper headers", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 600 });
    await h.connect("svc");
    await h.connect("dead");
  });
  after(async () => {
    await h.close();
  });

  it('prints {"Authorization":"Bearer …"} with the stored fresh token, without asking the server', async () => {
    const requests = h.bed.as.counters.tokenRequests;
    const r = await h.cli(["headers", "svc"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const stored = (await h.store.get("svc"))!.record.tokens!;
    assert.deepEqual(JSON.parse(r.stdout), { Authorization: `Bearer ${stored.accessToken.reveal()}` });
    assert.equal(r.stdout.split("\n").length, 2, "one line");
    assert.equal(h.bed.as.counters.tokenRequests, requests);
    assert.ok(await mcpAccepts(h.bed.mcpUrl, stored.accessToken.reveal()));
  });

  it("inside the refresh-ahead window: serves the valid token at once and starts no refresh (one-shot)", async () => {
    await updateRecord(h.store, "svc", (rec) => ({
      ...rec,
      tokens: { ...rec.tokens!, expiresAt: Date.now() + 60_000, obtainedAt: Date.now() - 540_000 },
    }));
    const before = (await h.store.get("svc"))!.record.tokens!.accessToken.reveal();
    const requests = h.bed.as.counters.tokenRequests;
    const r = await h.cli(["headers", "svc"]);
    assert.equal(r.code, 0, r.stderr);
    const token = (JSON.parse(r.stdout) as { Authorization: string }).Authorization.replace(/^Bearer /, "");
    assert.ok(await mcpAccepts(h.bed.mcpUrl, token));
    // A refresh it started would hold the exit up, or be abandoned after its request left
    // (losing a rotated refresh token): the long-running processes refresh ahead instead.
    assert.equal(token, before);
    assert.equal(h.bed.as.counters.tokenRequests, requests, "no request from a one-shot command");
  });

  it("a token that would not last --min-ttl is refreshed before it is printed", async () => {
    await updateRecord(h.store, "svc", (rec) => ({
      ...rec,
      tokens: { ...rec.tokens!, expiresAt: Date.now() + 60_000, obtainedAt: Date.now() - 540_000 },
    }));
    const before = (await h.store.get("svc"))!.record.tokens!.accessToken.reveal();
    const r = await h.cli(["headers", "svc", "--min-ttl", "2m"]);
    assert.equal(r.code, 0, r.stderr);
    const token = (JSON.parse(r.stdout) as { Authorization: string }).Authorization.replace(/^Bearer /, "");
    assert.notEqual(token, before);
    assert.equal(token, (await h.store.get("svc"))!.record.tokens!.accessToken.reveal());
  });

  it("a revoked grant: exit 77, nothing on stdout, even while the last access token has time left", async () => {
    // First learn of the revocation (as a refresh would), then ask again with a token still valid.
    await h.bed.as.revokeGrantOf((await h.store.get("dead"))!.record.tokens!.refreshToken!.reveal());
    assert.equal((await h.cli(["ensure", "dead", "--min-ttl", "59m"])).code, 77);
    const r = await h.cli(["headers", "dead"]);
    assert.equal(r.code, 77);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /reauth_required/);
  });

  it("a bad command line is a configuration error (78), with nothing on stdout", async () => {
    for (const argv of [["headers"], ["headers", "svc", "--timeout", "soon"], ["headers", "no/such"]]) {
      const r = await h.cli(argv);
      assert.equal(r.code, 78, argv.join(" "));
      assert.equal(r.stdout, "");
    }
  });

  it("an unknown connector: 78", async () => {
    const r = await h.cli(["headers", "nobody"]);
    assert.equal(r.code, 78);
    assert.equal(r.stdout, "");
  });

  it("--json changes nothing: an error stays on stderr, never in the headers a client would send", async () => {
    const r = await h.cli(["headers", "nobody", "--json"]);
    assert.equal(r.code, 78);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /nobody/);
  });
});
