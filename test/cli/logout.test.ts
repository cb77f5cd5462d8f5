import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { refreshGrant } from "../../src/oauth/token-endpoint.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { startStub } from "../oauth/stub-servers.js";
import { makeRecord } from "../support/fixtures.js";
import { type Cli, makeCli } from "./auth-cli-harness.js";

let bed: TestBed;
let cli: Cli;

before(async () => {
  bed = await startTestBed();
});
after(() => bed.close());
beforeEach(async () => {
  cli = await makeCli();
  bed.as.resetCounters();
});
afterEach(() => cli.cleanup());

async function loginAs(name: string): Promise<ConnectorRecord> {
  const r = await cli.run(["login", bed.mcpUrl, "--name", name]);
  assert.equal(r.code, 0, r.stderr);
  const store = await cli.openStore();
  try {
    return (await store.get(name))!.record;
  } finally {
    await store.close();
  }
}

describe("tokenkeeper logout", () => {
  it("--revoke revokes the refresh token at the server, which then refuses it, and removes the connector", async () => {
    const record = await loginAs("bye");
    const r = await cli.run(["logout", "bye", "--revoke"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Removed connector "bye"/);
    assert.match(r.stdout, /Revoked its refresh token at http:\/\/127\.0\.0\.1:\d+/);
    // The bed issues JWT access tokens, which it cannot revoke: said as a note, not a failure.
    assert.match(r.stdout, /cannot revoke the access token itself/);
    assert.doesNotMatch(r.stderr, /WARNING/);
    assert.ok(bed.as.counters.revocations >= 1, "the server confirms the revocation");
    await assert.rejects(refreshGrant(record, { clock: systemClock }), /invalid_grant/);
    assert.deepEqual(await cli.storedNames(), []);
  });

  it("--json reports what was revoked", async () => {
    await loginAs("j");
    const r = await cli.run(["logout", "j", "--revoke", "--json"]);
    assert.equal(r.code, 0);
    assert.equal(r.json!.removed, true);
    assert.equal(r.json!.revoked, true);
    const revs = r.json!.revocations as { token_type: string; revoked: boolean; reason?: string }[];
    assert.deepEqual(revs[0], { token_type: "refresh_token", revoked: true });
  });

  it("without --revoke removes locally and warns that the grant is still alive", async () => {
    const record = await loginAs("local");
    const r = await cli.run(["logout", "local"]);
    assert.equal(r.code, 0);
    assert.match(
      r.stderr,
      /WARNING: the grant was not revoked: it may still be alive at http:\/\/127\.0\.0\.1:\d+/,
    );
    assert.equal(bed.as.counters.revocations, 0);
    assert.deepEqual(await cli.storedNames(), []);
    // Indeed still alive at the server.
    const refreshed = await refreshGrant(record, { clock: systemClock });
    assert.ok(refreshed.tokens.accessToken);
  });

  it("offline: exits 75 and keeps the connector, naming what is still live; --force removes it", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const gone = `http://127.0.0.1:${port}`;
    const record = makeRecord("offline", {}, Date.now());
    record.server = {
      ...record.server,
      issuer: gone,
      metadata: { issuer: gone, token_endpoint: `${gone}/token`, revocation_endpoint: `${gone}/revoke` },
    };
    const store = await cli.openStore();
    await store.put("offline", record, null);
    await store.close();
    const r = await cli.run(["logout", "offline", "--revoke", "--json"]);
    assert.equal(r.code, 75, r.stderr);
    assert.equal(r.json!.revoked, false);
    assert.equal(r.json!.removed, false);
    assert.match(
      r.stderr,
      /WARNING: revocation at http:\/\/127\.0\.0\.1:\d+ did not succeed \(refresh_token: could not reach/,
    );
    assert.match(r.stderr, /still live at the server: the refresh token .* and the access token \(until /);
    assert.match(r.stderr, /the connector was kept so the revocation can be retried/);
    assert.deepEqual(r.json!.still_live, [
      "the refresh token (no known expiry)",
      `the access token (until ${new Date(record.tokens!.expiresAt!).toISOString()})`,
    ]);
    assert.deepEqual(await cli.storedNames(), ["offline"]);

    const forced = await cli.run(["logout", "offline", "--revoke", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /removed anyway \(--force\)/);
    assert.deepEqual(await cli.storedNames(), []);
  });

  it("a server refusing the revocation: exits 76 and keeps the connector", async () => {
    const record = await loginAs("refused");
    bed.as.resetCounters();
    const stub = await startStub(() => ({ status: 400, json: { error: "invalid_request" } }));
    try {
      const store = await cli.openStore();
      const stored = (await store.get("refused"))!;
      await store.put(
        "refused",
        {
          ...stored.record,
          server: {
            ...stored.record.server,
            metadata: { ...stored.record.server.metadata, revocation_endpoint: `${stub.origin}/revoke` },
          },
        },
        stored.version,
      );
      await store.close();
      const r = await cli.run(["logout", "refused", "--revoke"]);
      assert.equal(r.code, 76, r.stderr);
      assert.match(r.stdout, /Kept connector "refused"/);
      assert.match(r.stderr, /still live at the server: the refresh token/);
      assert.deepEqual(await cli.storedNames(), ["refused"]);
      // Indeed still alive at the real server.
      assert.ok((await refreshGrant(record, { clock: systemClock })).tokens.accessToken);
    } finally {
      await stub.close();
    }
  });

  it("a server without a revocation endpoint: exits 78 and keeps the connector; --force removes it", async () => {
    const record = makeRecord("norevoke", {}, Date.now());
    const store = await cli.openStore();
    await store.put("norevoke", record, null);
    await store.close();
    const r = await cli.run(["logout", "norevoke", "--revoke"]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /advertises no revocation_endpoint/);
    assert.deepEqual(await cli.storedNames(), ["norevoke"]);
    assert.equal((await cli.run(["logout", "norevoke", "--force"])).code, 64, "--force needs --revoke");
    assert.equal((await cli.run(["logout", "norevoke", "--revoke", "--force"])).code, 0);
    assert.deepEqual(await cli.storedNames(), []);
  });

  it("an unknown connector exits 78, a bad name or missing name is refused", async () => {
    const r = await cli.run(["logout", "nobody"]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /no connector named "nobody"/);
    assert.equal((await cli.run(["logout"])).code, 64);
    assert.equal((await cli.run(["logout", "../etc"])).code, 78);
  });
});
