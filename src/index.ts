/**
 * Tokenkeeper's public API. Optional parts live behind subpath exports so their drivers load
 * only when used: `tokenkeeper/redis`, `tokenkeeper/postgres`, `tokenkeeper/mcp`.
 */
export { type Clock, ManualClock, systemClock } from "./core/clock.js";
export { formatDuration, parseDuration } from "./core/duration.js";
export {
  ConfigError,
  ConflictError,
  ERROR_KINDS,
  type ErrorCode,
  type ErrorKind,
  EXIT,
  errorJson,
  exitCodeFor,
  InsufficientScopeError,
  isRetryable,
  isTokenkeeperError,
  LockTimeoutError,
  NotFoundError,
  ProtocolError,
  type ReauthReason,
  ReauthRequiredError,
  StoreCorruptError,
  StoreKeyError,
  StorePermissionError,
  StoreUnavailableError,
  TokenkeeperError,
  TransientError,
} from "./core/errors.js";
export type { ConnectorRecord, ConnectorSettings, ConnectorState, TokenSet } from "./core/record.js";
export { redact, Secret } from "./core/secret.js";
export type { EventListener, TokenkeeperEvent } from "./manager/events.js";
export type { Keeper, KeeperEnd, KeeperOptions, KeeperReport } from "./manager/keeper.js";
export { type LoginRequest, type LoginResult, login } from "./manager/login.js";
export { freshness, refreshWindowMs } from "./manager/refresh-policy.js";
export {
  type AccessToken,
  createTokenManager,
  type GetTokenOptions,
  TokenManager,
  type TokenManagerOptions,
} from "./manager/token-manager.js";
export type { NewLogin, Reauth } from "./manager/transitions.js";
export { type ConnectorView, coversView, viewOf } from "./manager/view.js";
export { discover } from "./oauth/discovery.js";
export type { FetchLike } from "./oauth/http.js";
export { revokeGrant } from "./oauth/revocation.js";
export { parseInsufficientScope } from "./oauth/www-authenticate.js";
export { FileStore, type FileStoreOptions } from "./store/file-store.js";
export { MemoryStore } from "./store/memory-store.js";
export { migrateStore, type OpenStoreOptions, openStore } from "./store/open-store.js";
export { defaultStateDir } from "./store/state-dir.js";
export {
  type CopyStoreReport,
  copyStore,
  describeStore,
  type InitReport,
  initStore,
  type RotateReport,
  type RotationStep,
  rotateStoreKey,
  type StoreAdminOptions,
  type StoreInfo,
} from "./store/store-admin.js";
export { parseStoreUrl, type StoreKind, type StoreUrl } from "./store/store-url.js";
export type { LockOptions, Store, StoredRecord, StoreLock } from "./store/types.js";
export { updateRecord } from "./store/update.js";
export { type AuthFetchOptions, createAuthFetch } from "./surfaces/auth-fetch.js";
export { type KeepaliveOptions, keepaliveOnce, runKeepalive } from "./surfaces/keepalive.js";
export {
  type NoticeMarks,
  type Notification,
  Notifier,
  type NotifierOptions,
  notifyOnReauth,
} from "./surfaces/notify.js";
export { type PreflightOptions, preflight, preflightAll } from "./surfaces/preflight.js";
export { type RunOutcome, type RunSupervisorOptions, superviseRun } from "./surfaces/run-supervisor.js";
export { combinedExitCode, type SkipRecord, skipRecordSchema } from "./surfaces/skip-record.js";
export { fetchRunToken, startTokenEndpoint } from "./surfaces/token-endpoint-server.js";
