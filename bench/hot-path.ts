/**
 * Hot-path benchmark: how many getAccessToken() calls per second a process gets from the
 * token manager (a fresh token served from memory), against a baseline measured in the same
 * run that reads and parses the token file on every call, as naive providers do. Then the
 * multi-process race: 8 processes at each expiry, refresh grants counted by the server.
 *
 *   npx tsx bench/hot-path.ts [--calls N] [--store URL]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TokenManager } from "../src/manager/token-manager.js";
import { FileStore } from "../src/store/file-store.js";
import { openStore } from "../src/store/open-store.js";
import type { Store } from "../src/store/types.js";
import { startTestBed } from "../test/bed/index.js";
import { startFleet } from "../test/fleet/fleet-workers.js";
import { connectTestBed } from "../test/support/connect.js";

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "200000" },
    store: { type: "string" },
    "skip-race": { type: "boolean", default: false },
  },
});
const calls = Number(values.calls);

async function rate(label: string, n: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(1000, n); i++) await fn(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const perSecond = n / seconds;
  console.log(
    `${label.padEnd(52)} ${Math.round(perSecond).toLocaleString("en-US").padStart(12)} calls/s  (${((seconds / n) * 1e6).toFixed(2)} µs/call)`,
  );
  return perSecond;
}

export async function benchHotPath(
  store: Store,
  label: string,
  naiveFile?: string,
): Promise<{ manager: number; baseline?: number }> {
  const manager = new TokenManager({ store });
  const managerRate = await rate(`tokenkeeper getAccessToken (${label})`, calls, () =>
    manager.getAccessToken("bench"),
  );
  let baseline: number | undefined;
  if (naiveFile) {
    // What a provider that keeps no state does: read, parse, check expiry, every call.
    baseline = await rate(
      "baseline: read + parse token file per call",
      Math.max(1000, Math.floor(calls / 20)),
      async () => {
        const data = JSON.parse(await readFile(naiveFile, "utf8")) as {
          record: { tokens: { access_token: string; expires_at: number } };
        };
        if (data.record.tokens.expires_at < Date.now()) throw new Error("expired");
        return data.record.tokens.access_token;
      },
    );
    console.log(`speed-up over the baseline: ${(managerRate / baseline).toFixed(0)}x`);
  }
  await manager.close();
  return { manager: managerRate, ...(baseline !== undefined ? { baseline } : {}) };
}

async function main(): Promise<void> {
  const bed = await startTestBed({ accessTokenTtl: 3600 });
  const dir = await mkdtemp(join(tmpdir(), "tk-bench-"));
  try {
    console.log(`# hot path (${calls.toLocaleString("en-US")} calls, Node ${process.version})`);
    const fileStore = new FileStore({ dir });
    await connectTestBed(bed, fileStore, "bench");
    await benchHotPath(fileStore, "file store", join(dir, "connectors", "bench.json"));
    await fileStore.close();
    if (values.store) {
      const other = await openStore(values.store, { env: process.env });
      await connectTestBed(bed, other, "bench");
      await benchHotPath(other, values.store.split(":")[0]!);
      await other.delete("bench");
      await other.close();
    }

    if (!values["skip-race"]) {
      console.log(
        "\n# refresh race: 8 processes wake together at each of 3 expiries (access tokens live 3 s)",
      );
      const raceBed = await startTestBed({ accessTokenTtl: 3 });
      const raceDir = await mkdtemp(join(tmpdir(), "tk-bench-race-"));
      const fleet = await startFleet(
        Array.from({ length: 8 }, () => ({ storeUrl: `file://${raceDir}`, env: process.env })),
        "race",
        3,
      );
      const store = new FileStore({ dir: raceDir });
      const seeded = await connectTestBed(raceBed, store, "race");
      raceBed.as.resetCounters();
      fleet.go(seeded.tokens!.expiresAt!);
      await fleet.finished.finally(() => fleet.kill());
      const c = raceBed.as.counters;
      console.log(
        `refresh grants at the server: ${c.grants.refresh_token} (expected 3), rejected refresh tokens: ${c.rejectedRefreshTokens} (expected 0)`,
      );
      await raceBed.close();
      await rm(raceDir, { recursive: true, force: true });
    }
  } finally {
    await bed.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
