/**
 * The window no client can close, and what the user sees when a process dies in it: the
 * authorization server has answered a refresh (and rotated the refresh token), the process is
 * killed before the new token set is saved. The store still holds the spent refresh token; the
 * next refresh presents it, the server revokes the grant, and every job from then on fails fast
 * with exit 77 and a skip record saying which login to run. bench/save-window.ts measures how
 * long this window lasts on each store.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { skipRecordSchema } from "../../src/surfaces/skip-record.js";
import { type Harness, startHarness } from "../cli/unattended-harness.js";
import { spawnScript } from "../store/fixtures/children.js";

const WORKER = fileURLToPath(new URL("../manager/fixtures/paused-refresher.ts", import.meta.url));

describe("a crash between the server's answer and the durable save", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 10 });
  });
  after(async () => {
    await h.close();
  });

  it("loses the rotation: the next job exits 77 with a reauth skip record, and the ones after fail fast", async () => {
    await h.connect("crashed");
    const spent = (await h.store.get("crashed"))!.record.tokens!.refreshToken!;
    h.bed.as.resetCounters();
    const worker = spawnScript(WORKER, [h.storeUrl, "crashed", "30000", "crash-after-answer"], {
      ...process.env,
      ...h.env,
    });
    try {
      const { answered } = JSON.parse(await worker.nextLine(60_000)) as { answered: number };
      assert.equal(answered, worker.pid);
    } finally {
      await worker.kill();
    }
    // The server rotated; the store never heard of it.
    assert.equal(h.bed.as.counters.refreshGrantsSucceeded, 1);
    assert.ok((await h.store.get("crashed"))!.record.tokens!.refreshToken!.equals(spent));

    // The next job needs a refresh (a token for an hour; the bed's last 10 s).
    const r = await h.cli(["ensure", "crashed", "--min-ttl", "1h", "--json"]);
    assert.equal(r.code, 77, r.stderr);
    const record = skipRecordSchema.parse(r.lines[0]);
    assert.equal(record.status, "skipped");
    assert.equal(record.code, "reauth_required");
    assert.equal(record.reason, "invalid_grant");
    assert.match(record.action ?? "", /tokenkeeper login .* --name 'crashed'/);
    assert.equal(h.bed.as.counters.refreshTokenReuse, 1, "the spent refresh token was presented once");

    // The verdict is in the store: the next job fails the same way without asking the server.
    const requests = h.bed.as.counters.tokenRequests;
    const again = await h.cli(["ensure", "crashed", "--min-ttl", "1h", "--json"]);
    assert.equal(again.code, 77);
    assert.equal(h.bed.as.counters.tokenRequests, requests);
  });
});
