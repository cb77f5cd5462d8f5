/**
 * Eight processes share one file store and wake together at each expiry. With rotating refresh
 * tokens, a second refresh with the same token would be a reuse, and the authorization server
 * would revoke the whole grant. The server's own counters must show exactly one refresh grant
 * per expiry (or a due one for a worker that asked late on a loaded machine, see
 * assertRaceVerdict) and not a single rejected refresh token.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FileStore } from "../../src/store/file-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { assertRaceVerdict, type RoundResult, startFleet } from "../fleet/fleet-workers.js";
import { connectTestBed } from "../support/connect.js";

const WORKERS = 8;
const ROUNDS = 3;
const TTL_S = 3;
/** The manager's expiry margin for these tokens: a tenth of their lifetime (refresh-policy.ts). */
const MARGIN_MS = (TTL_S * 1000) / 10;

describe("refresh race across processes (file store)", () => {
  let bed: TestBed;
  let dir: string;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: TTL_S });
    dir = await mkdtemp(join(tmpdir(), "tk-race-"));
  });
  after(async () => {
    await bed.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(`${WORKERS} processes racing at each of ${ROUNDS} expiries cause exactly one refresh grant per expiry and no rejected refresh token`, async (t) => {
    // Workers start gated (a TypeScript process takes a while to boot) and are released together
    // with the seeded token's expiry, so a slow starter cannot miss the first round.
    const fleet = await startFleet(
      Array.from({ length: WORKERS }, () => ({ storeUrl: `file://${dir}`, env: process.env })),
      "race",
      ROUNDS,
    );
    let outputs: RoundResult[][];
    let seededExpiresAt: number;
    try {
      const store = new FileStore({ dir });
      const seeded = await connectTestBed(bed, store, "race");
      await store.close();
      bed.as.resetCounters();
      seededExpiresAt = seeded.tokens!.expiresAt!;
      fleet.go(seededExpiresAt);
      outputs = await fleet.finished;
    } finally {
      fleet.kill();
    }

    const final = await new FileStore({ dir }).get("race");
    assertRaceVerdict(t, {
      counters: bed.as.counters,
      outputs,
      rounds: ROUNDS,
      seededExpiresAt,
      marginMs: MARGIN_MS,
      rotationCount: final?.record.state.rotationCount,
    });
  });
});
