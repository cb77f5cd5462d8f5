/**
 * A fleet sharing one authorization through a network store: 16 worker processes, half of them
 * reaching the server by one address and half by another (two independent sets of clients),
 * all waking at the same moment at each of several expiries. Refresh tokens rotate on every use
 * and a reuse revokes the whole grant, so the authorization server's own counters are the
 * verdict: exactly one refresh grant per expiry, not one rejected refresh token.
 *
 * On a loaded machine a worker can wake, or get through its call, only after the round's new
 * token has itself (nearly) expired: it must refresh then, and that extra grant is right, not a
 * race. The verdict tells the two apart: every grant must have been due (the token it replaced
 * was past its expiry margin when the grant was answered), each token comes from exactly one
 * grant, and the server's reuse and rejection counters stay at 0 in every case.
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
import { percentile, type RoundResult, startFleet, twoWaysTo } from "./fleet-workers.js";

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

    const c = bed.as.counters;
    // On failure, what each worker saw: per round, the token's end, who refreshed, how long it took.
    const seen = outputs
      .map(
        (rounds, i) =>
          `worker ${i}: ${rounds.map((r) => `${r.round}:${r.fingerprint.slice(-4)}@${r.expiresAt}${r.refreshed ? "*" : ""} asked ${r.askedAt}+${Math.round(r.latencyMs)}ms`).join(" ")}`,
      )
      .join("\n");
    // The server's own verdict, under any load: no refresh token presented twice or refused.
    assert.equal(
      c.rejectedRefreshTokens,
      0,
      `no refresh token rejected (${c.rejectedRefreshReasons.join(", ")})`,
    );
    assert.equal(c.refreshTokenReuse, 0, "no refresh token reused");
    // Every grant the server made is one a worker made, and each token came from one grant.
    const refreshes = outputs.flat().filter((l) => l.refreshed);
    assert.equal(c.grants.refresh_token, refreshes.length, `grants the workers made\n${seen}`);
    const issued = new Set(refreshes.map((l) => l.fingerprint));
    assert.equal(issued.size, refreshes.length, `one grant per token\n${seen}`);
    for (const line of outputs.flat())
      assert.ok(issued.has(line.fingerprint), `worker got a token no grant of the race issued\n${seen}`);
    // Every grant was due: when it was answered, the token it replaced (the one expiring just
    // before its own) was already inside its expiry margin. A second grant for the same expiry,
    // the race this test exists for, is answered while the first one's token is still fresh.
    let replaced = seededExpiresAt;
    for (const grant of [...refreshes].sort((a, b) => a.expiresAt - b.expiresAt)) {
      assert.ok(
        grant.refreshedAt! >= replaced - MARGIN_MS,
        `a grant answered at ${grant.refreshedAt} replaced a token good until ${replaced}: a double refresh\n${seen}`,
      );
      replaced = grant.expiresAt;
    }
    assert.ok(c.grants.refresh_token >= ROUNDS, `at least one grant per expiry\n${seen}`);
    const final = await seedStore.get(CONNECTOR);
    assert.equal(final?.record.state.rotationCount, c.grants.refresh_token, "every rotation is in the store");
    if (c.grants.refresh_token > ROUNDS) {
      // Only a worker that asked after the round's token was (nearly) gone refreshes again.
      t.diagnostic(
        `${c.grants.refresh_token - ROUNDS} extra grant(s), each due: a worker asked late on a loaded machine\n${seen}`,
      );
    }
    // Nobody late: the rounds are exactly the expiries, one refresher and one token each.
    for (let round = 1; round <= ROUNDS && c.grants.refresh_token === ROUNDS; round++) {
      const lines = outputs.map((rounds) => rounds[round - 1]!);
      assert.equal(lines.length, WORKERS);
      assert.equal(
        new Set(lines.map((l) => l.fingerprint)).size,
        1,
        `every worker got the same token in round ${round}`,
      );
      assert.equal(
        lines.filter((l) => l.refreshed).length,
        1,
        `exactly one worker refreshed in round ${round}`,
      );
    }

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
