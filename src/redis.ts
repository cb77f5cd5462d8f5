/** `tokenkeeper/redis`: the Redis fleet store (needs the optional `ioredis` package). */
export { RedisStore, type RedisStoreOptions } from "./store/redis-store.js";
export { generateKey, Keyring, loadKeyring, SealKey } from "./store/sealing.js";
