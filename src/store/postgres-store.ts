/**
 * A Store on PostgreSQL, so a team's machines share one authorization. Requires the optional
 * `pg` driver, loaded only when a PostgresStore is first used.
 *
 * Tables (in `schema`, default `public`; created by migrate(), i.e. `tokenkeeper store init`):
 *   tokenkeeper_connectors(name, version, sealed, updated_at)  one row per connector;
 *   tokenkeeper_locks(name, token, expires_at)                 refresh-lock leases;
 *   tokenkeeper_schema_migrations(version, name, applied_at)   applied migrations.
 *
 * The refresh lock is a lease row, not a session advisory lock. An advisory lock belongs to one
 * database session: with a connection pool it would have to be released on the very connection
 * that took it, and it ends only when that session does. A holder that is paused (SIGSTOP, GC,
 * partition) keeps its session, so it would block every other machine indefinitely, and a
 * holder that died behind a dropped network keeps it until the server notices the dead TCP
 * connection, which can take hours. A lease row expires by time, measured by the database's
 * clock (the one clock all clients share), and the versioned compare-and-set fences the paused
 * holder that wakes up after its lease.
 *
 * URL: `postgres://` or `postgresql://`, as libpq/pg accept it. Tokenkeeper's own query
 * parameters: `schema=` and `encrypt=false` (store records unsealed; only for tests or a
 * database that is encrypted by other means).
 */
import type { Pool, PoolClient, PoolConfig } from "pg";
import { ConfigError, ConflictError, StoreUnavailableError, TokenkeeperError } from "../core/errors.js";
import { assertConnectorName } from "../core/record.js";
import { type Migration, POSTGRES_MIGRATIONS } from "./migrations/postgres.js";
import { LazyClient, loadOptionalDriver, NetworkStoreBase, type NetworkStoreOptions } from "./network.js";
import { parseNetworkStoreUrl, redactedUserInfo } from "./store-url.js";

export const DEFAULT_POSTGRES_SCHEMA = "public";
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** First key of the two-key advisory lock that serializes migrations ("tk"). */
const MIGRATION_LOCK_CLASS = 0x746b;

export interface PostgresStoreOptions extends NetworkStoreOptions {
  /** `postgres://` or `postgresql://`; may carry `schema=` and `encrypt=false` query parameters. */
  url: string;
  /** Schema holding the tables (lower-case identifier); overrides the URL's `schema=`. */
  schema?: string;
  /** Server-side bound on every statement (default 5000); the client gives up 1 s later. */
  statementTimeoutMs?: number;
  /** Connections kept in the pool (default 4). */
  poolSize?: number;
}

export interface MigrationReport {
  /** Migrations this call applied (empty when the schema was already current). */
  applied: number[];
  /** The schema version now in the database. */
  current: number;
}

export class PostgresStore extends NetworkStoreBase {
  readonly schema: string;
  readonly #connectionString: string;
  readonly #statementTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #poolSize: number;
  readonly #t: { connectors: string; locks: string; migrations: string; schema: string };
  readonly #pool = new LazyClient(() => this.#createPool(), this.location);

  constructor(options: PostgresStoreOptions) {
    const parsed = parseNetworkStoreUrl(options.url, "postgres");
    const url = parsed.driverUrl;
    const schema = options.schema ?? parsed.params.schema ?? DEFAULT_POSTGRES_SCHEMA;
    if (!SCHEMA_NAME.test(schema)) {
      throw new ConfigError(
        `PostgreSQL schema "${schema.slice(0, 80)}" is not a plain lower-case identifier (letters, digits, _)`,
      );
    }
    super(redactPostgresUrl(url, schema), options, parsed.encrypt);
    this.schema = schema;
    this.#connectionString = url.toString();
    const s = `"${schema}"`;
    this.#t = {
      schema: s,
      connectors: `${s}.tokenkeeper_connectors`,
      locks: `${s}.tokenkeeper_locks`,
      migrations: `${s}.tokenkeeper_schema_migrations`,
    };
    this.#statementTimeoutMs = options.statementTimeoutMs ?? 5_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
    this.#poolSize = options.poolSize ?? 4;
  }

  override async list(): Promise<string[]> {
    // COLLATE "C": byte order, which for connector names (ASCII) is JavaScript's sort order.
    const rows = await this.#query<{ name: string }>(
      "list",
      `SELECT name FROM ${this.#t.connectors} ORDER BY name COLLATE "C"`,
    );
    return rows.map((r) => r.name);
  }

  override async delete(name: string, expectedVersion?: number): Promise<boolean> {
    assertConnectorName(name);
    const rows = await this.#query<{ version: string }>(
      "delete",
      `DELETE FROM ${this.#t.connectors} WHERE name = $1 AND ($2::bigint IS NULL OR version = $2::bigint) RETURNING version`,
      [name, expectedVersion ?? null],
    );
    if (rows.length > 0) return true;
    if (expectedVersion === undefined) return false;
    const actual = await this.#version(name);
    if (actual === null) return false;
    throw new ConflictError(name, expectedVersion, actual);
  }

  // Takes the row when absent or when its lease ran out by the database's clock, so the lease's
  // end is by that clock too. Concurrent attempts serialize on the row; the loser re-checks the
  // WHERE against the winner's row.
  protected override async takeLease(name: string, token: string, leaseMs: number): Promise<number | null> {
    const rows = await this.#query<{ expires_ms: number }>(
      "lock",
      `INSERT INTO ${this.#t.locks} AS l (name, token, expires_at)
         VALUES ($1, $2, now() + $3::int * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
         WHERE l.expires_at <= now()
       RETURNING (extract(epoch FROM l.expires_at) * 1000)::float8 AS expires_ms`,
      [name, token, leaseMs],
    );
    return rows[0]?.expires_ms ?? null;
  }

  protected override async dropLease(name: string, token: string): Promise<void> {
    await this.#query("unlock", `DELETE FROM ${this.#t.locks} WHERE name = $1 AND token = $2`, [name, token]);
  }

  // clock_timestamp(), not now(): the time the row is checked, by the same clock that judges it.
  protected override async leaseLeft(name: string, token: string): Promise<number> {
    const rows = await this.#query<{ left_ms: number }>(
      "check lock",
      `SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS left_ms
         FROM ${this.#t.locks} WHERE name = $1 AND token = $2`,
      [name, token],
    );
    return rows[0]?.left_ms ?? 0;
  }

  /**
   * Creates the schema and tables, applying numbered migrations in order, idempotently. All of
   * it runs in one transaction under an advisory lock keyed by the schema, so two machines
   * running `tokenkeeper store init` at once apply each migration exactly once.
   */
  override async migrate(migrations: readonly Migration[] = POSTGRES_MIGRATIONS): Promise<MigrationReport> {
    const pool = await this.#pool.get();
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw this.#unavailable("migrate", e);
    }
    let failure: unknown;
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1::int, hashtext($2))", [
        MIGRATION_LOCK_CLASS,
        this.schema,
      ]);
      // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
      // schema exists, which a store user without DDL rights on `public` lacks.
      const exists = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [this.schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${this.#t.schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.#t.migrations} (
           version int PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const done = await client.query<{ version: number }>(`SELECT version FROM ${this.#t.migrations}`);
      const appliedBefore = new Set(done.rows.map((r) => r.version));
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (appliedBefore.has(m.version)) continue;
        for (const statement of m.sql(this.#t.schema)) await client.query(statement);
        await client.query(`INSERT INTO ${this.#t.migrations} (version, name) VALUES ($1, $2)`, [
          m.version,
          m.name,
        ]);
        applied.push(m.version);
      }
      await client.query("COMMIT");
      const current = Math.max(0, ...appliedBefore, ...applied);
      return { applied, current };
    } catch (e) {
      failure = e;
      await client.query("ROLLBACK").catch(() => {});
      if (e instanceof TokenkeeperError) throw e;
      throw this.#unavailable("migrate", e);
    } finally {
      // A client whose transaction failed is discarded rather than returned to the pool.
      client.release(failure instanceof Error ? failure : undefined);
    }
  }

  protected override async getRaw(name: string): Promise<{ text: string; version: number } | null> {
    const rows = await this.#query<{ version: string; sealed: string }>(
      "get",
      `SELECT version, sealed FROM ${this.#t.connectors} WHERE name = $1`,
      [name],
    );
    const row = rows[0];
    return row ? { text: row.sealed, version: Number(row.version) } : null;
  }

  async #version(name: string): Promise<number | null> {
    const rows = await this.#query<{ version: string }>(
      "get",
      `SELECT version FROM ${this.#t.connectors} WHERE name = $1`,
      [name],
    );
    return rows[0] ? Number(rows[0].version) : null;
  }

  protected override async putRaw(
    name: string,
    text: string,
    expectedVersion: number | null,
  ): Promise<number> {
    // Under READ COMMITTED, concurrent UPDATEs of one row serialize and each re-checks
    // `version = $2` against the committed winner, so exactly one writer per version wins.
    const rows =
      expectedVersion === null
        ? await this.#query<{ version: string }>(
            "put",
            `INSERT INTO ${this.#t.connectors} (name, version, sealed, updated_at) VALUES ($1, 1, $2, now())
             ON CONFLICT (name) DO NOTHING RETURNING version`,
            [name, text],
          )
        : await this.#query<{ version: string }>(
            "put",
            `UPDATE ${this.#t.connectors} SET version = version + 1, sealed = $3, updated_at = now()
             WHERE name = $1 AND version = $2 RETURNING version`,
            [name, expectedVersion, text],
          );
    const row = rows[0];
    if (row) return Number(row.version);
    // Lost: read the actual version for the error (it may have moved again; it is only a hint).
    throw new ConflictError(name, expectedVersion, await this.#version(name));
  }

  override async close(): Promise<void> {
    const pool = await this.#pool.close();
    await pool?.end().catch(() => {});
  }

  async #query<R extends object>(what: string, text: string, values: unknown[] = []): Promise<R[]> {
    const pool = await this.#pool.get();
    try {
      const result = await pool.query<R & Record<string, unknown>>(text, values);
      return result.rows;
    } catch (e) {
      throw this.#unavailable(what, e);
    }
  }

  /**
   * Maps a driver error. Only its message is kept, never the error object: pg errors can carry
   * the statement's parameters (a record, when encryption is off).
   */
  #unavailable(what: string, e: unknown): TokenkeeperError {
    if (e instanceof TokenkeeperError) return e;
    const code = (e as { code?: unknown }).code;
    if (code === "42P01" || code === "3F000") {
      return new ConfigError(
        `PostgreSQL store ${this.location} has no Tokenkeeper tables in schema "${this.schema}"; run \`tokenkeeper store init\``,
        { store: this.location },
      );
    }
    const message = e instanceof Error ? e.message : String(e);
    return new StoreUnavailableError(`PostgreSQL store ${this.location} failed to ${what}: ${message}`, {
      store: this.location,
      ...(typeof code === "string" ? { sqlState: code } : {}),
    });
  }

  async #createPool(): Promise<Pool> {
    const pg = await loadDriver();
    const config: PoolConfig = {
      connectionString: this.#connectionString,
      max: this.#poolSize,
      connectionTimeoutMillis: this.#connectTimeoutMs,
      // Server-side bound (also covers waiting for row locks and advisory locks) ...
      statement_timeout: this.#statementTimeoutMs,
      lock_timeout: this.#statementTimeoutMs,
      idle_in_transaction_session_timeout: this.#statementTimeoutMs * 2,
      // ... and a client-side one for a server that stopped answering altogether.
      query_timeout: this.#statementTimeoutMs + 1_000,
      idleTimeoutMillis: 10_000,
      // An idle pool does not keep a short-lived CLI process alive.
      allowExitOnIdle: true,
      keepAlive: true,
      application_name: "tokenkeeper",
    };
    const pool = new pg.Pool(config);
    // An idle connection that breaks emits "error" on the pool; unhandled, it would crash the
    // process. The next query reports the problem instead.
    pool.on("error", () => {});
    return pool;
  }
}

function loadDriver(): Promise<{ Pool: typeof Pool }> {
  return loadOptionalDriver(
    async () => {
      // pg is CommonJS: its exports arrive as the default export of the ES module namespace.
      const mod = await import("pg");
      return { Pool: mod.default?.Pool ?? mod.Pool };
    },
    "pg",
    "PostgreSQL",
  );
}

/**
 * `postgres://user:***@host:port/db`: the password never appears, nor any other query parameter
 * (libpq accepts `password=` there too); the schema does when it is not the default.
 */
export function redactPostgresUrl(url: URL, schema = DEFAULT_POSTGRES_SCHEMA): string {
  const auth = redactedUserInfo(url);
  const query = schema !== DEFAULT_POSTGRES_SCHEMA ? `?schema=${schema}` : "";
  return `${url.protocol}//${auth}${url.host}${url.pathname}${query}`;
}
