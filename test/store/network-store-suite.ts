/**
 * What every network store (Redis, PostgreSQL) must do beyond the Store contract, tested once
 * for each: records sealed at rest, a wrong key refused without harm, key rotation that loses no
 * concurrent refresh, the lease of a killed lock holder, and a server that is down or hangs. A
 * backend's test file calls describeNetworkStore() with a target that says how to open its
 * store and how to reach its raw data; the Store conformance suite is registered with it.
 */
import assert from "node:assert/strict";
import { after, describe, it, type TestContext } from "node:test";
import {
  LockTimeoutError,
  StoreCorruptError,
  StoreKeyError,
  StoreUnavailableError,
} from "../../src/core/errors.js";
import { encodeRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import type { NetworkStore } from "../../src/store/open-store.js";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import {
  killHard,
  requireService,
  Scratch,
  type Service,
  serviceGate,
  silentServer,
  spawnLockHolder,
  withParams,
} from "../support/services.js";
import { describeStoreConformance } from "./conformance.js";
import { sealLegacy } from "./fixtures/legacy-seal.js";

export interface OpenOptions {
  /** The store URL; its query names the namespace (`prefix=`, `schema=`) and may say `encrypt=false`. */
  url: string;
  keyring: Keyring | null;
  encrypt?: boolean;
  /** Bound on connecting, and on each command where the backend has a bound of its own. */
  timeoutMs?: number;
}

export interface NetworkStoreTarget<S extends NetworkStore> {
  service: Service;
  /** A client, as the backend's constructor makes one. */
  open(options: OpenOptions): S;
  /** What holds a sealed record on this server, for test names ("row", "raw value"). */
  rawRecord: string;
  /** What the store sends the server, for test names ("call", "command"). */
  call: string;
  /** The stored text of a connector and its version, read past the Store API. */
  readRaw(store: S, name: string): Promise<{ sealed: string; version: number } | undefined>;
  /** Overwrites a connector's stored text past the Store API. */
  writeRaw(store: S, name: string, sealed: string): Promise<void>;
  /** Everything the server holds for a connector, to compare before and after. */
  snapshot(store: S, name: string): Promise<unknown>;
  /** Removes a connector's refresh lock past the Store API, as an operator clearing it would. */
  dropLockRaw(store: S, name: string): Promise<void>;
  /** A closed port: a URL for it with the password "hunter2", and the location the store must show. */
  unreachable: { url: string; location: string };
}

/** Opens stores for a backend's own tests; each is closed, and each namespace dropped, after the suite. */
export interface TestStores<S extends NetworkStore> {
  /** The test server's URL, naming a fresh namespace. */
  url(): string;
  /** A client; by default in a fresh namespace and sealing under a fresh key. */
  open(options?: Partial<OpenOptions>): S;
  /** open(), then migrate(): ready for records. */
  ready(options?: Partial<OpenOptions>): Promise<S>;
}

const ring = (...keys: ReturnType<typeof generateKey>[]) => new Keyring(keys[0]!, keys.slice(1));

/**
 * Registers the Store conformance suite for `target` (gated on its server), then a suite named
 * `label` with the network-store tests and the backend's own (`backendTests`).
 */
export async function describeNetworkStore<S extends NetworkStore>(
  label: string,
  target: NetworkStoreTarget<S>,
  backendTests: (stores: TestStores<S>) => void,
): Promise<void> {
  const { service } = target;
  if (await serviceGate(service)) {
    describeStoreConformance(service, {
      async create() {
        const scratch = new Scratch();
        const url = scratch.url(service);
        const keyring = ring(generateKey());
        const store = target.open({ url, keyring });
        await store.migrate();
        return { store, second: async () => target.open({ url, keyring }), cleanup: () => scratch.drop() };
      },
    });
  }

  describe(label, () => {
    const scratch = new Scratch();
    const opened: S[] = [];
    const stores: TestStores<S> = {
      url: () => scratch.url(service),
      open(options = {}) {
        const store = target.open({
          ...options,
          url: options.url ?? scratch.url(service),
          keyring: options.keyring === undefined ? ring(generateKey()) : options.keyring,
        });
        opened.push(store);
        return store;
      },
      async ready(options) {
        const store = stores.open(options);
        await store.migrate();
        return store;
      },
    };
    const { open, ready } = stores;
    const required = (t: TestContext) => requireService(service, t);
    after(async () => {
      for (const s of opened) await s.close();
      await scratch.drop();
    });

    it("tells a holder its lease is gone when the server says so, though its own clock cannot know", async (t) => {
      if (!(await required(t))) return;
      const url = withParams(stores.url(), { encrypt: "false" });
      const a = await ready({ url, keyring: null });
      const b = open({ url, keyring: null });
      const lock = await a.lock("cleared", { leaseMs: 10_000, waitMs: 100 });
      // Cleared behind its back (an operator, a failover that lost the key) and taken by another.
      await target.dropLockRaw(a, "cleared");
      const other = await b.lock("cleared", { leaseMs: 10_000, waitMs: 100 });
      assert.ok(lock.held(), "by its own clock the first holder still has its lease");
      assert.equal(await lock.remainingMs(), 0, "the server says the lease is not its own any more");
      assert.ok((await other.remainingMs()) > 5_000);
      await lock.release();
      assert.ok((await other.remainingMs()) > 5_000, "the old holder's release left the new lease alone");
      await other.release();
    });

    it("frees the lock of a holder that was SIGKILLed once its lease runs out", async (t) => {
      if (!(await required(t))) return;
      const url = withParams(stores.url(), { encrypt: "false" });
      const store = await ready({ url, keyring: null });
      const { child, expiresAt } = await spawnLockHolder(url, "killed", 1_000);
      await killHard(child);
      // Dead, but its lease still stands: no one may take the lock yet.
      await assert.rejects(store.lock("killed", { leaseMs: 5_000, waitMs: 0 }), LockTimeoutError);
      // Generous bounds: on a loaded machine the waiter's polls run late, not the lease early.
      const lock = await store.lock("killed", { leaseMs: 5_000, waitMs: 10_000 });
      const late = Date.now() - expiresAt;
      assert.ok(lock.held());
      // expiresAt is the lease's end by the store's clock: the database's, which on this host is
      // ours, or for Redis the child's, counted from before its request (early, never late).
      assert.ok(late >= 0, `taken only after the dead holder's lease (${late} ms after it ended)`);
      assert.ok(late < 5_000, `taken soon after the lease ran out (${late} ms)`);
      await lock.release();
    });

    it(`seals records at rest: the ${target.rawRecord} holds no token, under the current key id`, async (t) => {
      if (!(await required(t))) return;
      const key = generateKey();
      const store = await ready({ keyring: ring(key) });
      await store.put("sealed", makeRecord("sealed"), null);
      const raw = await target.readRaw(store, "sealed");
      assert.ok(raw);
      assert.equal(raw.version, 1);
      assert.match(raw.sealed, new RegExp(`^tk2\\.${key.id}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]+$`));
      for (const secret of [
        "access-token-value-0001",
        "refresh-token-value-0001",
        "mcp.example.test",
        "client-123",
      ]) {
        assert.ok(!raw.sealed.includes(secret), `the ${target.rawRecord} must not contain ${secret}`);
      }
      // Copied onto another connector's entry, the blob does not open (the name is in the AAD).
      await store.put("other", makeRecord("other"), null);
      await target.writeRaw(store, "other", raw.sealed);
      await assert.rejects(store.get("other"), StoreCorruptError);
    });

    it("refuses a rollback: an older sealed blob of the same connector put back by a writer without the key", async (t) => {
      if (!(await required(t))) return;
      const store = await ready({ keyring: ring(generateKey()) });
      await store.put(
        "roll",
        makeRecord("roll", { tokens: makeTokens({ accessToken: new Secret("at-v1") }) }),
        null,
      );
      const v1 = (await target.readRaw(store, "roll"))!;
      await store.put(
        "roll",
        makeRecord("roll", { tokens: makeTokens({ accessToken: new Secret("at-v2") }) }),
        1,
      );
      // The writer replaces the blob in place (the version stays 2) ...
      await target.writeRaw(store, "roll", v1.sealed);
      assert.equal((await target.readRaw(store, "roll"))!.version, 2);
      const error = await store.get("roll").then(
        () => assert.fail("an older blob was accepted"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreCorruptError, String(error));
      assert.match(error.message, /older version put back in place of version 2/);
    });

    it("reads a record sealed before versions were bound (tk1) and re-seals it as tk2 on the next write", async (t) => {
      if (!(await required(t))) return;
      const key = generateKey();
      const store = await ready({ keyring: ring(key) });
      const record = makeRecord("legacy");
      await store.put("legacy", record, null);
      await target.writeRaw(store, "legacy", sealLegacy(key, "legacy", encodeRecord(record)));
      const got = await store.get("legacy");
      assert.equal(got?.record.tokens?.accessToken.reveal(), "access-token-value-0001");
      await store.put("legacy", got!.record, got!.version);
      const raw = (await target.readRaw(store, "legacy"))!;
      assert.match(raw.sealed, /^tk2\./);
      assert.equal((await store.get("legacy"))?.version, 2);
    });

    it("refuses to read a record sealed under a key it lacks, and leaves the record intact", async (t) => {
      if (!(await required(t))) return;
      const url = stores.url();
      const k1 = generateKey();
      const writer = await ready({ url, keyring: ring(k1) });
      await writer.put("secret", makeRecord("secret"), null);
      const before = await target.snapshot(writer, "secret");

      const stranger = open({ url, keyring: ring(generateKey()) });
      const error = await stranger.get("secret").then(
        () => assert.fail("read with the wrong key"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreKeyError);
      assert.equal(error.code, "store_key");
      assert.match(error.message, /connector "secret"/);
      assert.ok(error.message.includes(k1.id), "names the key the record needs");
      // Without any key, opening a sealing store is refused outright.
      assert.throws(() => target.open({ url, keyring: null }), StoreKeyError);
      // With encryption off, the sealed record is not mistaken for damage.
      await assert.rejects(open({ url, encrypt: false, keyring: null }).get("secret"), StoreKeyError);

      assert.deepEqual(await target.snapshot(writer, "secret"), before);
      assert.equal(
        (await writer.get("secret"))?.record.tokens?.accessToken.reveal(),
        "access-token-value-0001",
      );
    });

    it("rotates the key: every record re-sealed, a concurrent refresh kept, the old key removable", async (t) => {
      if (!(await required(t))) return;
      const url = stores.url();
      const k1 = generateKey();
      const k2 = generateKey();
      const names = Array.from({ length: 8 }, (_, i) => `conn-${i}`);
      const store = await ready({ url, keyring: ring(k1) });
      for (const name of names) await store.put(name, makeRecord(name), null);

      // Another machine that already has the new key keeps refreshing during the rotation.
      const refresher = open({ url, keyring: ring(k2, k1) });
      const refreshes = (async () => {
        for (const name of names) {
          for (;;) {
            const current = await refresher.get(name);
            const next = makeRecord(name, {
              tokens: makeTokens({ accessToken: new Secret(`rotated-${name}`) }),
            });
            try {
              await refresher.put(name, next, current!.version);
              break;
            } catch {}
          }
        }
      })();
      const report = await store.rotateKey(ring(k2, k1));
      await refreshes;
      assert.equal(report.keyId, k2.id);
      assert.equal(report.resealed.length + report.unchanged.length, names.length);

      const newOnly = open({ url, keyring: ring(k2) });
      for (const name of names) {
        const got = await newOnly.get(name);
        assert.equal(
          got?.record.tokens?.accessToken.reveal(),
          `rotated-${name}`,
          `${name}: the refresh was not lost`,
        );
      }
      await assert.rejects(open({ url, keyring: ring(k1) }).get(names[0]!), StoreKeyError);
    });

    it("fails fast with StoreUnavailableError, and no password, when the server is unreachable", async () => {
      const { url, location } = target.unreachable;
      const store = open({ url });
      assert.equal(store.location, location);
      for (const attempt of [
        () => store.get("x"),
        () => store.lock("x", { leaseMs: 1_000, waitMs: 10_000 }),
        () => store.migrate(),
      ]) {
        const started = Date.now();
        const error = await attempt().then(
          () => assert.fail("succeeded against a closed port"),
          (e: unknown) => e,
        );
        assert.ok(Date.now() - started < 3_000, `gave up within 3 s (${Date.now() - started} ms)`);
        assert.ok(error instanceof StoreUnavailableError);
        assert.equal(error.code, "store_unavailable");
        assert.ok(error.message.includes(location), error.message);
        assert.ok(!JSON.stringify(error.toJSON()).includes("hunter2"));
        assert.ok(!error.message.includes("hunter2"));
      }
    });

    it(`bounds every ${target.call} when the server accepts connections but never answers`, async () => {
      const server = await silentServer();
      try {
        const url = new URL(stores.url());
        url.hostname = "127.0.0.1";
        url.port = String(server.port);
        const store = open({ url: url.href, timeoutMs: 300 });
        const started = Date.now();
        await assert.rejects(store.put("x", makeRecord("x"), null), StoreUnavailableError);
        assert.ok(Date.now() - started < 2_000, `gave up in ${Date.now() - started} ms`);
      } finally {
        await server.close();
      }
    });

    backendTests(stores);
  });
}
