/**
 * PostgreSQL schema migrations, numbered and applied in order by PostgresStore.migrate().
 * Kept as TypeScript strings so the package ships them without extra files. Never edit an
 * applied migration: add the next number.
 */
export interface Migration {
  version: number;
  name: string;
  /** SQL statements; `schema` is an already-validated, quoted identifier. */
  sql(schema: string): string[];
}

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "connectors and locks",
    sql: (s) => [
      `CREATE TABLE IF NOT EXISTS ${s}.tokenkeeper_connectors (
        name text PRIMARY KEY,
        version bigint NOT NULL CHECK (version > 0),
        sealed text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
      // One lease row per connector whose refresh lock is (or was) taken. Expiry is by the
      // database's clock, the one clock every client agrees on.
      `CREATE TABLE IF NOT EXISTS ${s}.tokenkeeper_locks (
        name text PRIMARY KEY,
        token text NOT NULL,
        expires_at timestamptz NOT NULL
      )`,
    ],
  },
];
