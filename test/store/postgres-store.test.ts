import assert from "node:assert/strict";
import { it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { POSTGRES_MIGRATIONS } from "../../src/store/migrations/postgres.js";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { makeRecord } from "../support/fixtures.js";
import { postgresQuery, requirePostgres } from "../support/services.js";
import { describeNetworkStore, type NetworkStoreTarget } from "./network-store-suite.js";

const postgres: NetworkStoreTarget<PostgresStore> = {
  service: "postgres",
  open: ({ url, keyring, encrypt, timeoutMs }) =>
    new PostgresStore({ url, keyring, encrypt, connectTimeoutMs: timeoutMs }),
  rawRecord: "row",
  call: "call",
  async readRaw(store, name) {
    const [row] = await postgresQuery<{ sealed: string; version: string }>(
      `SELECT sealed, version FROM "${store.schema}".tokenkeeper_connectors WHERE name = $1`,
      [name],
    );
    return row && { sealed: row.sealed, version: Number(row.version) };
  },
  async writeRaw(store, name, sealed) {
    await postgresQuery(`UPDATE "${store.schema}".tokenkeeper_connectors SET sealed = $1 WHERE name = $2`, [
      sealed,
      name,
    ]);
  },
  snapshot: (store, name) =>
    postgresQuery(`SELECT version, sealed FROM "${store.schema}".tokenkeeper_connectors WHERE name = $1`, [
      name,
    ]),
  async dropLockRaw(store, name) {
    await postgresQuery(`DELETE FROM "${store.schema}".tokenkeeper_locks WHERE name = $1`, [name]);
  },
  unreachable: {
    url: "postgres://tk:hunter2@127.0.0.1:1/test?password=hunter2",
    location: "postgres://tk:***@127.0.0.1:1/test",
  },
};

await describeNetworkStore("PostgresStore", postgres, ({ url, open }) => {
  it("applies migrations once, however many processes run them at the same time", async (t) => {
    if (!(await requirePostgres(t))) return;
    const shared = url();
    const stores = Array.from({ length: 4 }, () => open({ url: shared }));
    const reports = await Promise.all(stores.map((s) => s.migrate()));
    const latest = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version));
    assert.equal(reports.filter((r) => r.applied.length > 0).length, 1, "exactly one run applied them");
    for (const r of reports) assert.equal(r.current, latest);
    assert.deepEqual(await stores[0]!.migrate(), { applied: [], current: latest });
    const rows = await postgresQuery<{ version: number }>(
      `SELECT version FROM "${stores[0]!.schema}".tokenkeeper_schema_migrations ORDER BY version`,
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
