import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  ConfigError,
  LockTimeoutError,
  StoreCorruptError,
  StoreKeyError,
  StoreUnavailableError,
} from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { POSTGRES_MIGRATIONS } from "../../src/store/migrations/postgres.js";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { generateKey, Keyring } from "../../src/store/sealing.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";
import {
  dropPostgresSchema,
  killHard,
  POSTGRES_URL,
  postgresQuery,
  requirePostgres,
  serviceGate,
  silentServer,
  spawnLockHolder,
  uniqueSuffix,
} from "../support/services.js";
import { describeStoreConformance } from "./conformance.js";

const schemas: string[] = [];
function newSchema(): string {
  const schema = `tk_test_${uniqueSuffix()}`;
  schemas.push(schema);
  return schema;
}
const ring = (...keys: ReturnType<typeof generateKey>[]) => new Keyring(keys[0]!, keys.slice(1));

if (await serviceGate("postgres")) {
  describeStoreConformance("postgres", {
    async create() {
      const schema = newSchema();
      const keyring = ring(generateKey());
      const open = () => new PostgresStore({ url: POSTGRES_URL, schema, keyring });
      const store = open();
      await store.migrate();
      return { store, second: async () => open(), cleanup: () => dropPostgresSchema(schema) };
    },
  });
}

describe("PostgresStore", () => {
  const opened: PostgresStore[] = [];
  const open = (options: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}) => {
    const store = new PostgresStore({
      url: POSTGRES_URL,
      schema: newSchema(),
      keyring: ring(generateKey()),
      ...options,
    });
    opened.push(store);
    return store;
  };
  /** A migrated store in a fresh schema. */
  const ready = async (options: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}) => {
    const store = open(options);
    await store.migrate();
    return store;
  };
  after(async () => {
    for (const s of opened) await s.close();
    for (const s of schemas) await dropPostgresSchema(s).catch(() => {});
  });

  it("applies migrations once, however many processes run them at the same time", async (t) => {
    if (!(await requirePostgres(t))) return;
    const schema = newSchema();
    const stores = Array.from({ length: 4 }, () => open({ schema }));
    const reports = await Promise.all(stores.map((s) => s.migrate()));
    const latest = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version));
    assert.equal(reports.filter((r) => r.applied.length > 0).length, 1, "exactly one run applied them");
    for (const r of reports) assert.equal(r.current, latest);
    assert.deepEqual(await stores[0]!.migrate(), { applied: [], current: latest });
    const rows = await postgresQuery<{ version: number }>(
      `SELECT version FROM "${schema}".tokenkeeper_schema_migrations ORDER BY version`,
    );
    assert.deepEqual(
      rows.map((r) => r.version),
      POSTGRES_MIGRATIONS.map((m) => m.version),
    );
    await stores[0]!.put("after-migrate", makeRecord("after-migrate"), null);
  });

  it("tells the user to run store init when the tables do not exist", async (t) => {
    if (!(await requirePostgres(t))) return;
    const store = open();
    const error = await store.get("x").then(
      () => assert.fail("read without tables"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /tokenkeeper store init/);
  });

  it("frees the lock of a holder that was SIGKILLed once its lease runs out", async (t) => {
    if (!(await requirePostgres(t))) return;
    const store = await ready({ encrypt: false, keyring: null });
    const url = `${POSTGRES_URL}?schema=${store.schema}&encrypt=false`;
    const { child, expiresAt } = await spawnLockHolder(url, "killed", 1_000);
    await killHard(child);
    await assert.rejects(store.lock("killed", { leaseMs: 5_000, waitMs: 0 }), LockTimeoutError);
    const lock = await store.lock("killed", { leaseMs: 5_000, waitMs: 3_000 });
    const late = Date.now() - expiresAt;
    assert.ok(lock.held());
    // expiresAt is the lease end by the database's clock, which on this host is ours.
    assert.ok(late >= 0, `taken only after the dead holder's lease (${late} ms after it ended)`);
    assert.ok(late < 1_000, `taken soon after the lease ran out (${late} ms)`);
    await lock.release();
  });

  it("seals records at rest: the row holds no token, under the current key id", async (t) => {
    if (!(await requirePostgres(t))) return;
    const key = generateKey();
    const store = await ready({ keyring: ring(key) });
    await store.put("sealed", makeRecord("sealed"), null);
    const [row] = await postgresQuery<{ sealed: string; version: string }>(
      `SELECT sealed, version FROM "${store.schema}".tokenkeeper_connectors WHERE name = 'sealed'`,
    );
    assert.ok(row);
    assert.equal(Number(row.version), 1);
    assert.match(row.sealed, new RegExp(`^tk1\\.${key.id}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]+$`));
    for (const secret of [
      "access-token-value-0001",
      "refresh-token-value-0001",
      "mcp.example.test",
      "client-123",
    ]) {
      assert.ok(!row.sealed.includes(secret), `raw row must not contain ${secret}`);
    }
    await store.put("other", makeRecord("other"), null);
    await postgresQuery(
      `UPDATE "${store.schema}".tokenkeeper_connectors SET sealed = $1 WHERE name = 'other'`,
      [row.sealed],
    );
    await assert.rejects(store.get("other"), StoreCorruptError);
  });

  it("refuses to read a record sealed under a key it lacks, and leaves the record intact", async (t) => {
    if (!(await requirePostgres(t))) return;
    const k1 = generateKey();
    const writer = await ready({ keyring: ring(k1) });
    await writer.put("secret", makeRecord("secret"), null);
    const select = `SELECT version, sealed FROM "${writer.schema}".tokenkeeper_connectors WHERE name = 'secret'`;
    const before = await postgresQuery(select);

    const stranger = open({ schema: writer.schema, keyring: ring(generateKey()) });
    const error = await stranger.get("secret").then(
      () => assert.fail("read with the wrong key"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StoreKeyError);
    assert.match(error.message, /connector "secret"/);
    assert.ok(error.message.includes(k1.id), "names the key the record needs");
    assert.throws(() => new PostgresStore({ url: POSTGRES_URL, schema: writer.schema }), StoreKeyError);

    assert.deepEqual(await postgresQuery(select), before);
    assert.equal(
      (await writer.get("secret"))?.record.tokens?.accessToken.reveal(),
      "access-token-value-0001",
    );
  });

  it("rotates the key: every record re-sealed, a concurrent refresh kept, the old key removable", async (t) => {
    if (!(await requirePostgres(t))) return;
    const k1 = generateKey();
    const k2 = generateKey();
    const names = Array.from({ length: 8 }, (_, i) => `conn-${i}`);
    const store = await ready({ keyring: ring(k1) });
    for (const name of names) await store.put(name, makeRecord(name), null);

    const refresher = open({ schema: store.schema, keyring: ring(k2, k1) });
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

    const newOnly = open({ schema: store.schema, keyring: ring(k2) });
    for (const name of names) {
      const got = await newOnly.get(name);
      assert.equal(
        got?.record.tokens?.accessToken.reveal(),
        `rotated-${name}`,
        `${name}: the refresh was not lost`,
      );
    }
    await assert.rejects(open({ schema: store.schema, keyring: ring(k1) }).get(names[0]!), StoreKeyError);
  });

  it("fails fast with StoreUnavailableError, and no password, when the server is unreachable", async () => {
    const store = open({ url: "postgres://tk:hunter2@127.0.0.1:1/test?password=hunter2", schema: "public" });
    assert.equal(store.location, "postgres://tk:***@127.0.0.1:1/test");
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
      assert.ok(error.message.includes("postgres://tk:***@127.0.0.1:1/test"), error.message);
      assert.ok(!JSON.stringify(error.toJSON()).includes("hunter2"));
      assert.ok(!error.message.includes("hunter2"));
    }
  });

  it("bounds every call when the server accepts connections but never answers", async () => {
    const server = await silentServer();
    try {
      const store = open({ url: `postgres://tk@127.0.0.1:${server.port}/test`, connectTimeoutMs: 300 });
      const started = Date.now();
      await assert.rejects(store.put("x", makeRecord("x"), null), StoreUnavailableError);
      assert.ok(Date.now() - started < 2_000, `gave up in ${Date.now() - started} ms`);
    } finally {
      await server.close();
    }
  });

  it("describes itself without secrets and validates its URL and schema", () => {
    const plain = { encrypt: false, keyring: null };
    assert.equal(
      new PostgresStore({ url: "postgresql://app:pw@db:5433/tokens?sslmode=require", ...plain }).location,
      "postgresql://app:***@db:5433/tokens",
    );
    assert.equal(
      new PostgresStore({ url: "postgres://db/tokens?schema=team_a&encrypt=false" }).location,
      "postgres://db/tokens?schema=team_a",
    );
    assert.throws(() => new PostgresStore({ url: "mysql://db/x", ...plain }), ConfigError);
    assert.throws(
      () => new PostgresStore({ url: "postgres://db/x", schema: 'x"; DROP', ...plain }),
      ConfigError,
    );
  });
});
