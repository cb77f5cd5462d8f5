/** `tokenkeeper status`: everything about a connector except its secrets. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Harness, startHarness } from "./unattended-harness.js";

/** Every credential the store holds for `name`, as the strings that must never be printed. */
async function secretsOf(h: Harness, name: string): Promise<string[]> {
  const r = (await h.store.get(name))!.record;
  return [
    r.tokens?.accessToken.reveal(),
    r.tokens?.refreshToken?.reveal(),
    r.client.clientSecret?.reveal(),
  ].filter((s): s is string => typeof s === "string");
}

describe("tokenkeeper status", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 30 });
    await h.connect("alpha");
    await h.connect("beta", { settings: { refreshTokenLifetimeMs: 86_400_000 } });
    // Some history: a refresh (rotation) for alpha, a revoked grant for beta.
    assert.equal((await h.cli(["ensure", "alpha"])).code, 0);
    await h.bed.as.revokeGrantOf((await h.store.get("beta"))!.record.tokens!.refreshToken!.reveal());
    assert.equal((await h.cli(["ensure", "beta"])).code, 77);
  });
  after(async () => {
    await h.close();
  });

  it("--json shows health, lifetimes, refresh history and the store, and no secret", async () => {
    const r = await h.cli(["status", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { store: string; connectors: Record<string, unknown>[] };
    assert.equal(out.store, h.storeUrl);
    const [alpha, beta] = out.connectors;
    assert.equal(alpha!.name, "alpha");
    assert.equal(alpha!.health, "ok");
    assert.ok((alpha!.access_token_ttl_ms as number) > 20_000);
    assert.equal(alpha!.refresh_token_present, true);
    assert.equal(typeof alpha!.refresh_token_age_ms, "number");
    assert.equal(alpha!.last_refresh_outcome, "ok");
    assert.equal(alpha!.refresh_count, 1);
    assert.equal(alpha!.rotation_count, 1);
    assert.equal(typeof alpha!.clock_skew_ms, "number");
    assert.equal(beta!.health, "reauth_required");
    assert.equal((beta!.reauth as { reason: string }).reason, "invalid_grant");
    assert.match((beta!.reauth as { action: string }).action, /tokenkeeper login/);
    assert.ok(beta!.refresh_token_expires_at, "a configured lifetime gives a known expiry");

    const printed = r.stdout + r.stderr;
    for (const secret of [...(await secretsOf(h, "alpha")), ...(await secretsOf(h, "beta"))]) {
      assert.ok(!printed.includes(secret), "a credential was printed");
    }
  });

  it("prints a readable summary, also without secrets", async () => {
    const r = await h.cli(["status"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /alpha {2}\[ok\]/);
    assert.match(r.stdout, /beta {2}\[reauth_required\]/);
    assert.match(r.stdout, /NEEDS A HUMAN/);
    for (const secret of await secretsOf(h, "alpha")) assert.ok(!r.stdout.includes(secret));
  });

  it("shows one connector by name; an unknown one exits 78", async () => {
    const one = await h.cli(["status", "alpha", "--json"]);
    assert.equal(JSON.parse(one.stdout).connectors.length, 1);
    assert.equal((await h.cli(["status", "nobody"])).code, 78);
    assert.equal((await h.cli(["status", "--wat"])).code, 78);
  });

  it("contacts no server", async () => {
    const requests = h.bed.as.counters.tokenRequests;
    await h.cli(["status"]);
    assert.equal(h.bed.as.counters.tokenRequests, requests);
  });
});
