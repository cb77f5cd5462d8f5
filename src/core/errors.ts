/**
 * One error class per failure kind, each with a stable `code`. The CLI maps codes to exit codes
 * and JSON; nothing matches on message text. Messages never contain a secret: callers pass
 * server text through scrubText() before it reaches a message or a field.
 */
import { redact, scrubText } from "./secret.js";
import { shellQuote } from "./shell-quote.js";

export type ErrorCode =
  | "reauth_required"
  | "transient"
  | "invalid_config"
  | "not_found"
  | "protocol_error"
  | "insecure_endpoint"
  | "store_corrupt"
  | "store_permission"
  | "store_unavailable"
  | "store_key"
  | "lock_timeout"
  | "conflict"
  | "insufficient_scope"
  | "login_failed"
  | "expired_on_arrival"
  | "cancelled";

export interface ErrorFields {
  connector?: string;
  [key: string]: unknown;
}

export class TokenkeeperError extends Error {
  readonly code: ErrorCode;
  readonly fields: ErrorFields;

  constructor(code: ErrorCode, message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.fields = fields;
  }

  get connector(): string | undefined {
    return this.fields.connector;
  }

  /** A JSON-safe description: code, message and fields (never the cause, which may hold a raw response). */
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.fields };
  }
}

/** Why a human must act. Stable strings, part of the skip-record schema. */
export type ReauthReason =
  | "invalid_grant"
  | "invalid_client"
  | "unauthorized_client"
  | "no_refresh_token"
  | "refresh_token_expired"
  | "insufficient_scope"
  | "token_rejected"
  | "not_authorized"
  | "access_denied"
  /** The token endpoint's answer to a refresh was not a valid token response: the refresh token may be spent. */
  | "invalid_token_response"
  /** `proxy --reauth browser`: a sign-in page is open; the proxy resumes by itself when it completes. */
  | "sign_in_open";

export interface ReauthFields extends ErrorFields {
  connector: string;
  reason: ReauthReason;
  /** The OAuth `error` the server returned, when there was one. */
  serverError?: string;
  /** The server's `error_description`, scrubbed and truncated. */
  serverErrorDescription?: string;
  /** When the connector entered this state (epoch ms). */
  since: number;
  /** What a human must do, as a command line when possible. */
  action: string;
  /** For step-up: the scope the resource server asked for. */
  requiredScope?: string;
}

export class ReauthRequiredError extends TokenkeeperError {
  declare readonly fields: ReauthFields;
  constructor(fields: ReauthFields, options?: { cause?: unknown }) {
    const clean: ReauthFields = {
      ...fields,
      ...(fields.serverErrorDescription !== undefined
        ? { serverErrorDescription: scrubText(fields.serverErrorDescription, 300) }
        : {}),
    };
    const server = clean.serverError
      ? ` (server said ${clean.serverError}${clean.serverErrorDescription ? `: ${clean.serverErrorDescription}` : ""})`
      : "";
    super(
      "reauth_required",
      `connector "${fields.connector}" needs a human to re-authorize: ${fields.reason}${server}. ${fields.action}`,
      clean,
      options,
    );
  }
  get reason(): ReauthReason {
    return this.fields.reason;
  }
  get action(): string {
    return this.fields.action;
  }
}

export class TransientError extends TokenkeeperError {
  constructor(
    message: string,
    fields: ErrorFields & { retryAfterMs?: number; status?: number } = {},
    options?: { cause?: unknown },
  ) {
    super("transient", message, fields, options);
  }
  get retryAfterMs(): number | undefined {
    return this.fields.retryAfterMs as number | undefined;
  }
}

export class ConfigError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super("invalid_config", message, fields, options);
  }
}

export class NotFoundError extends TokenkeeperError {
  constructor(connector: string, where: string) {
    super(
      "not_found",
      `no connector named "${connector}" in ${where}; run \`tokenkeeper login <mcp-server-url> --name ${connector}\``,
      { connector, store: where },
    );
  }
}

/** A server answered with something that is not valid for the protocol (bad metadata, bad token response). */
export class ProtocolError extends TokenkeeperError {
  constructor(
    message: string,
    fields: ErrorFields & { server?: string; field?: string } = {},
    options?: { cause?: unknown },
  ) {
    super("protocol_error", message, fields, options);
  }
}

export class InsecureEndpointError extends TokenkeeperError {
  constructor(url: string, what: string) {
    super("insecure_endpoint", `${what} ${url} is not HTTPS; only loopback hosts may use plain HTTP`, {
      url,
      what,
    });
  }
}

export class StoreCorruptError extends TokenkeeperError {
  constructor(
    message: string,
    fields: ErrorFields & { file?: string; movedTo?: string } = {},
    options?: { cause?: unknown },
  ) {
    super("store_corrupt", message, fields, options);
  }
}

export class StorePermissionError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields & { file?: string } = {}) {
    super("store_permission", message, fields);
  }
}

export class StoreUnavailableError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields & { store?: string } = {}, options?: { cause?: unknown }) {
    super("store_unavailable", message, fields, options);
  }
}

export class StoreKeyError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super("store_key", message, fields, options);
  }
}

export class LockTimeoutError extends TokenkeeperError {
  constructor(connector: string, waitedMs: number, fields: ErrorFields = {}) {
    super(
      "lock_timeout",
      `could not take the refresh lock for "${connector}" within ${waitedMs} ms (another process holds it)`,
      { connector, waitedMs, ...fields },
    );
  }
}

/** A compare-and-set write lost: someone else wrote a newer version first. */
export class ConflictError extends TokenkeeperError {
  constructor(connector: string, expected: number | null, actual: number | null) {
    super(
      "conflict",
      `connector "${connector}" changed in the store (expected version ${expected}, found ${actual})`,
      { connector, expected, actual },
    );
  }
}

export class InsufficientScopeError extends TokenkeeperError {
  constructor(connector: string, requiredScope: string | undefined, fields: ErrorFields = {}) {
    super(
      "insufficient_scope",
      `the server requires scope "${requiredScope ?? "unknown"}" that connector "${connector}" was not granted; run \`tokenkeeper login --name ${shellQuote(connector)} --scope ${shellQuote(requiredScope ?? "…")}\` again`,
      { connector, requiredScope, ...fields },
    );
  }
}

export class LoginError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super("login_failed", message, fields, options);
  }
}

/**
 * The server's new access token was already expired when it arrived, by the skew-corrected expiry
 * (its lifetime is shorter than the clock difference between us and the authorization server).
 * Every new token would be as dead, so this is not retried: a human must fix a clock (NTP) or
 * the server's token lifetime.
 */
export class ExpiredOnArrivalError extends TokenkeeperError {
  constructor(
    fields: ErrorFields & {
      connector: string;
      /** The lifetime the server stated (ms), when it stated one. */
      grantedLifetimeMs?: number;
      /** The AS's clock minus ours (ms), as measured. */
      clockSkewMs?: number;
      action: string;
    },
    message: string,
  ) {
    super("expired_on_arrival", message, fields);
  }
}

export function isTokenkeeperError(e: unknown): e is TokenkeeperError {
  return e instanceof TokenkeeperError;
}

/**
 * Exit codes, from sysexits.h where one fits. Documented in the README's exit-code table.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64,
  protocol: 76,
  ioError: 74,
  transient: 75,
  reauth: 77,
  config: 78,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface ErrorKind {
  /** The process exit code (README "Exit codes"). */
  exit: ExitCode;
  /**
   * Whether trying again later, unchanged, may succeed: the server or store is failing, a lock is
   * busy, a write lost a race. Never true when a human or a configuration change is needed.
   */
  retryable: boolean;
}

/**
 * The one table from an error code to what it means outside the process: exit code and
 * retryability. The CLI's exit codes and `--json` errors, skip records, the proxy's JSON-RPC
 * errors and the token endpoint's HTTP statuses are all read from here.
 */
export const ERROR_KINDS: Readonly<Record<ErrorCode, ErrorKind>> = {
  reauth_required: { exit: EXIT.reauth, retryable: false },
  insufficient_scope: { exit: EXIT.reauth, retryable: false },
  transient: { exit: EXIT.transient, retryable: true },
  store_unavailable: { exit: EXIT.transient, retryable: true },
  lock_timeout: { exit: EXIT.transient, retryable: true },
  conflict: { exit: EXIT.transient, retryable: true },
  protocol_error: { exit: EXIT.protocol, retryable: false },
  store_corrupt: { exit: EXIT.ioError, retryable: false },
  store_permission: { exit: EXIT.ioError, retryable: false },
  invalid_config: { exit: EXIT.config, retryable: false },
  not_found: { exit: EXIT.config, retryable: false },
  insecure_endpoint: { exit: EXIT.config, retryable: false },
  store_key: { exit: EXIT.config, retryable: false },
  login_failed: { exit: EXIT.config, retryable: false },
  expired_on_arrival: { exit: EXIT.config, retryable: false },
  cancelled: { exit: EXIT.failure, retryable: false },
};

/** What an unexpected (untyped) error means: a bug, not worth retrying. */
const INTERNAL: ErrorKind = { exit: EXIT.failure, retryable: false };

export function errorKindOf(error: unknown): ErrorKind {
  return error instanceof TokenkeeperError ? ERROR_KINDS[error.code] : INTERNAL;
}

export function exitCodeFor(error: unknown): number {
  return errorKindOf(error).exit;
}

/** Whether trying again later, unchanged, may succeed (see ErrorKind.retryable). */
export function isRetryable(error: unknown): boolean {
  return errorKindOf(error).retryable;
}

/** The JSON form of any error, as `--json` prints it under `"error"`: stable code, retryability, fields. */
export interface ErrorJson {
  code: ErrorCode | "internal";
  message: string;
  retryable: boolean;
  [field: string]: unknown;
}

/**
 * The one JSON shape for an error. Fields are redacted and the message scrubbed; the stable
 * `code` is set after the fields (an OAuth "code" field would be a secret, our error code is not).
 */
export function errorJson(error: unknown): ErrorJson {
  if (error instanceof TokenkeeperError) {
    const fields = redact(error.fields) as Record<string, unknown>;
    return {
      ...fields,
      code: error.code,
      message: scrubText(error.message, 1000),
      retryable: ERROR_KINDS[error.code].retryable,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", message: scrubText(message), retryable: false };
}
