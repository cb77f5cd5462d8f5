/**
 * Eight processes share one file store and wake together at each expiry. With rotating refresh
 * tokens, a second refresh with the same token would be a reuse, and the authorization server
 * would revoke the whole grant. The server's own counters must show exactly one refresh grant
 * per expiry and not a single rejected refresh token.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FileStore } from "../../src/store/file-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type RoundResult, startFleet } from "../fleet/fleet-workers.js";
import { connectTestBed } from "../support/connect.js";

const WORKERS = 8;
const ROUNDS = 3;

describe("refresh race across processes (file store)", () => {
  let bed: TestBed;
  let dir: string;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 3 });
    dir = await mkdtemp(join(tmpdir(), "tk-race-"));
  });
  after(async () => {
    await bed.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(`${WORKERS} processes racing at each of ${ROUNDS} expiries cause exactly one refresh grant per expiry and no rejected refresh token`, async () => {
    // Workers start gated (a TypeScript process takes a while to boot) and are released together
    // with the seeded token's expiry, so a slow starter cannot miss the first round.
    const fleet = await startFleet(
      Array.from({ length: WORKERS }, () => ({ storeUrl: `file://${dir}`, env: process.env })),
      "race",
      ROUNDS,
    );
    let outputs: RoundResult[][];
    try {
      const store = new FileStore({ dir });
      const seeded = await connectTestBed(bed, store, "race");
      await store.close();
      bed.as.resetCounters();
      fleet.go(seeded.tokens!.expiresAt!);
      outputs = await fleet.finished;
    } finally {
      fleet.kill();
    }

    assert.equal(bed.as.counters.grants.refresh_token, ROUNDS, "one refresh grant per expiry");
    assert.equal(bed.as.counters.rejectedRefreshTokens, 0, "no refresh token was ever reused");
    assert.equal(bed.as.counters.refreshTokenReuse, 0);
    for (let round = 1; round <= ROUNDS; round++) {
      const prints = new Set(outputs.map((rounds) => rounds[round - 1]!.fingerprint));
      assert.equal(prints.size, 1, `every worker got the same token in round ${round}`);
    }
    const final = await new FileStore({ dir }).get("race");
    assert.equal(final?.record.state.rotationCount, ROUNDS);
  });
});
