/**
 * A fleet sharing one authorization through a network store: 16 worker processes, half of them
 * reaching the server by one address and half by another (two independent sets of clients),
 * all waking at the same moment at each of several expiries. Refresh tokens rotate on every use
 * and a reuse revokes the whole grant, so the authorization server's own counters are the
 * verdict: exactly one refresh grant per expiry, not one rejected refresh token.
 *
 * On a loaded machine a worker may ask so late that the round's new token is itself (nearly)
 * expired: its extra grant is due, not a race (see assertRaceVerdict).
 *
 * @slow: the test runner starts it first so it overlaps the rest of the suite.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { makeCli } from "../cli/auth-cli-harness.js";
import { connectTestBed } from "../support/connect.js";
import { requirePostgres, requireRedis, withScratchStore } from "../support/services.js";
import { assertRaceVerdict, percentile, type RoundResult, startFleet, twoWaysTo } from "./fleet-workers.js";

const WORKERS = 16;
const ROUNDS = 3;
const CONNECTOR = "fleet";
const TTL_S = 3;
/** The manager's expiry margin for these tokens: a tenth of their lifetime (refresh-policy.ts). */
const MARGIN_MS = (TTL_S * 1000) / 10;

describe("refresh race across a fleet sharing a network store", () => {
  let bed: TestBed;
  const key = generateKey();
  const keyring = new Keyring(key);
  const workerEnv: NodeJS.ProcessEnv = { ...process.env, TOKENKEEPER_KEY: key.export().reveal() };
  delete workerEnv.TOKENKEEPER_KEY_FILE;

  before(async () => {
    bed = await startTestBed({ accessTokenTtl: TTL_S });
  });
  after(async () => {
    await bed.close();
  });

  /**
   * Seeds the connector once every worker is up, releases them, and checks the verdict.
   * `meanwhile` runs alongside the race until the fleet is done (`done()` turns true).
   */
  async function race(
    t: TestContext,
    seedStore: Store,
    urls: [string, string],
    env = workerEnv,
    meanwhile?: (done: () => boolean) => Promise<void>,
  ): Promise<void> {
    const specs = Array.from({ length: WORKERS }, (_, i) => ({ storeUrl: urls[i % 2]!, env }));
    const fleet = await startFleet(specs, CONNECTOR, ROUNDS);
    let outputs: RoundResult[][];
    let seededExpiresAt: number;
    try {
      const seeded = await connectTestBed(bed, seedStore, CONNECTOR);
      bed.as.resetCounters();
      seededExpiresAt = seeded.tokens!.expiresAt!;
      fleet.go(seededExpiresAt);
      let finished = false;
      const alongside = meanwhile?.(() => finished);
      // Its failure is reported below, once the fleet is done; not as an unhandled rejection.
      alongside?.catch(() => {});
      try {
        outputs = await fleet.finished;
      } finally {
        finished = true;
        await alongside;
      }
    } finally {
      fleet.kill();
    }

    const final = await seedStore.get(CONNECTOR);
    assertRaceVerdict(t, {
      counters: bed.as.counters,
      outputs,
      rounds: ROUNDS,
      seededExpiresAt,
      marginMs: MARGIN_MS,
      rotationCount: final?.record.state.rotationCount,
    });

    const latencies = outputs.flat().map((l) => l.latencyMs);
    t.diagnostic(
      `caller latency at expiry over ${latencies.length} calls: p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
        `p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms`,
    );
  }

  it(`Redis: ${WORKERS} processes on two clients racing at each of ${ROUNDS} expiries cause one refresh grant per expiry and no rejected refresh token`, async (t) => {
    if (!(await requireRedis(t))) return;
    await withScratchStore("redis", keyring, (url, seed) => race(t, seed, twoWaysTo(url)));
  });

  it(`PostgreSQL: ${WORKERS} processes on two clients racing at each of ${ROUNDS} expiries cause one refresh grant per expiry and no rejected refresh token`, async (t) => {
    if (!(await requirePostgres(t))) return;
    await withScratchStore("postgres", keyring, (url, seed) => {
      const [first, second] = twoWaysTo(url);
      // The second group names the same database by its other scheme spelling as well.
      return race(t, seed, [first, second.replace(/^postgres:/, "postgresql:")]);
    });
  });

  it("Redis: the same race with `store rotate-key --promote` flipping the sealing key throughout loses no rotation", async (t) => {
    if (!(await requireRedis(t))) return;
    const other = generateKey();
    const both = new Keyring(key, [other]);
    // The workers can read under either key; they write under the first.
    const env: NodeJS.ProcessEnv = {
      ...workerEnv,
      TOKENKEEPER_KEY: `${key.export().reveal()},${other.export().reveal()}`,
    };
    const cli = await makeCli();
    const keyFile = join(cli.home, "store.key");
    await writeFile(keyFile, both.toKeyFileText().reveal(), { mode: 0o600 });
    let promotions = 0;
    let resealed = 0;
    try {
      await withScratchStore("redis", both, async (url, seed) => {
        const urls = twoWaysTo(url);
        await race(t, seed, urls, env, async (done) => {
          for (let i = 0; !done(); i++) {
            const to = i % 2 === 0 ? other.id : key.id;
            const r = await cli.run(["store", "rotate-key", "--store", urls[1], "--promote", to, "--json"], {
              TOKENKEEPER_KEY_FILE: keyFile,
            });
            assert.equal(r.code, 0, r.stderr);
            promotions++;
            resealed += Number(r.json?.resealed);
            // A breather, so the rotation does not starve the workers of the CPU it shares with them.
            await sleep(10);
          }
        });
      });
      t.diagnostic(`${promotions} key promotions (${resealed} re-seals) ran during the race`);
      assert.ok(promotions >= ROUNDS, `rotation ran throughout (${promotions} promotions)`);
    } finally {
      await cli.cleanup();
    }
  });
});
