/** `tokenkeeper/postgres`: the PostgreSQL fleet store (needs the optional `pg` package). */
export { PostgresStore, type PostgresStoreOptions } from "./store/postgres-store.js";
export { generateKey, Keyring, loadKeyring, SealKey } from "./store/sealing.js";
