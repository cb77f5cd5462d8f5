/**
 * When the shared store goes away, a process keeps working for as long as the token it holds is
 * valid, never refreshes without the store's lock (a refresh it could not save would strand the
 * rotated refresh token), and says clearly, naming the store, when it cannot go on. The store is
 * reached through a TCP forwarder the test can cut and restore, with a real server behind it.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { EXIT, exitCodeFor, StoreUnavailableError } from "../../src/core/errors.js";
import type { TokenkeeperEvent } from "../../src/manager/events.js";
import { expiryMarginMs, refreshWindowMs } from "../../src/manager/refresh-policy.js";
import { type AccessToken, TokenManager } from "../../src/manager/token-manager.js";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { RedisStore } from "../../src/store/redis-store.js";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import type { Store } from "../../src/store/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";
import { requirePostgres, requireRedis, type Service, withScratchStore } from "../support/services.js";

/** The port a server URL without one means. */
const DEFAULT_PORT: Record<Service, number> = { redis: 6379, postgres: 5432 };

/** Forwards 127.0.0.1:<port> to a target; down() cuts every connection and refuses new ones. */
class Forwarder {
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect({ host: this.targetHost, port: this.targetPort });
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(this.port, "127.0.0.1");
    await once(server, "listening");
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async down(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function until(deadlineAt: number): Promise<void> {
  const wait = deadlineAt - Date.now();
  if (wait > 0) await sleep(wait);
}

describe("when the shared store is unreachable", () => {
  let bed: TestBed;
  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 4 });
  });
  after(async () => {
    await bed.close();
  });

  /**
   * The scenario for one backend, in a namespace of its own on `service`'s server: `open(url)`
   * opens the store at `url`, which leads through the forwarder; `direct` reaches the same data
   * without it.
   */
  function scenario(service: Service, open: (url: string, keyring: Keyring) => Store): Promise<void> {
    const keyring = new Keyring(generateKey());
    return withScratchStore(service, keyring, async (url, direct) => {
      const target = new URL(url);
      const forwarder = new Forwarder(target.hostname, Number(target.port || DEFAULT_PORT[service]));
      await forwarder.up();
      const via = new URL(url);
      via.hostname = "127.0.0.1";
      via.port = String(forwarder.port);
      await offline(open(via.href, keyring), forwarder, direct);
    });
  }

  /** What the manager does over `store` while `forwarder` cuts it off, and once it is back. */
  async function offline(store: Store, forwarder: Forwarder, direct: Store): Promise<void> {
    const events: TokenkeeperEvent[] = [];
    const manager = new TokenManager({
      store,
      retry: { initialDelayMs: 100, maxDelayMs: 200, deadlineMs: 600 },
      onEvent: (e) => events.push(e),
    });
    try {
      const seeded = await connectTestBed(bed, direct, "offline");
      bed.as.resetCounters();
      const first = await manager.getAccessToken("offline");
      const tokens = seeded.tokens!;
      const expiresAt = first.expiresAt!;
      const staleAt = expiresAt - expiryMarginMs(tokens);
      const usableAt = staleAt - refreshWindowMs(tokens);

      await forwarder.down();

      // Fresh: served from memory, no store round trip at all.
      const started = Date.now();
      const again = await manager.getAccessToken("offline");
      assert.ok(again.token.equals(first.token));
      assert.ok(Date.now() - started < 250, `served from memory (${Date.now() - started} ms)`);

      // In the refresh-ahead window: still served at once; the background refresh fails on the store.
      await until(usableAt + 100);
      const usable = await manager.getAccessToken("offline");
      assert.ok(usable.token.equals(first.token), "the still-valid token is served");
      for (let i = 0; i < 50 && !events.some((e) => e.type === "refresh_failed"); i++) await sleep(50);
      const failed = events.find((e) => e.type === "refresh_failed");
      assert.equal(failed?.type === "refresh_failed" && failed.error.code, "store_unavailable");

      // Expired (by the safety margin): the caller is told why, and which store.
      await until(staleAt + 50);
      const error = await manager.getAccessToken("offline").then(
        () => assert.fail("handed out an expired token"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.equal(error.code, "store_unavailable");
      assert.equal(error.fields.store, store.location);
      assert.ok(error.message.includes(store.location), error.message);
      assert.equal(exitCodeFor(error), EXIT.transient);
      assert.equal(bed.as.counters.grants.refresh_token, 0, "never refreshed without the store's lock");

      // The store comes back: the next call refreshes and saves the rotation.
      await forwarder.up();
      let recovered: AccessToken | undefined;
      // Callers probe a cooling-down connector every 1–2 s; the rest of the bound is room for
      // a loaded machine to reconnect (far below the old cool-down, which outlived outages).
      const giveUpAt = Date.now() + 15_000;
      const seen = new Set<string>();
      while (!recovered && Date.now() < giveUpAt) {
        recovered = await manager.getAccessToken("offline").catch((e: unknown) => {
          seen.add(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
          return undefined;
        });
        if (!recovered) await sleep(100);
      }
      assert.ok(recovered, `recovered within 15 s of the store coming back; saw: ${[...seen].join(" | ")}`);
      assert.ok(!recovered.token.equals(first.token), "a new token");
      assert.equal(bed.as.counters.grants.refresh_token, 1);
      assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
      assert.equal(
        (await direct.get("offline"))?.record.state.rotationCount,
        1,
        "the rotation is in the store",
      );
    } finally {
      await manager.close();
      await store.close();
      await forwarder.down();
    }
  }

  it("Redis: serves the cached token while it is valid, never refreshes without the store, then reports store_unavailable naming the store, and recovers", async (t) => {
    if (!(await requireRedis(t))) return;
    await scenario(
      "redis",
      (url, keyring) => new RedisStore({ url, keyring, commandTimeoutMs: 300, connectTimeoutMs: 300 }),
    );
  });

  it("PostgreSQL: the same, with the database behind the forwarder", async (t) => {
    if (!(await requirePostgres(t))) return;
    await scenario(
      "postgres",
      (url, keyring) => new PostgresStore({ url, keyring, statementTimeoutMs: 300, connectTimeoutMs: 300 }),
    );
  });
});
