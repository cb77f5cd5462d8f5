/**
 * One error class per failure kind, each with a stable `code`. The CLI maps codes to exit codes
 * and JSON; nothing matches on message text. Messages never contain a secret: callers pass
 * server text through scrubText() before it reaches a message or a field.
 */
import { scrubText } from "./secret.js";

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
  | "access_denied";

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
      `the server requires scope "${requiredScope ?? "unknown"}" that connector "${connector}" was not granted; run \`tokenkeeper login --name ${connector} --scope "${requiredScope ?? "…"}"\` again`,
      { connector, requiredScope, ...fields },
    );
  }
}

export class LoginError extends TokenkeeperError {
  constructor(message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super("login_failed", message, fields, options);
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

export function exitCodeFor(error: unknown): number {
  if (!(error instanceof TokenkeeperError)) return EXIT.failure;
  switch (error.code) {
    case "reauth_required":
    case "insufficient_scope":
      return EXIT.reauth;
    case "transient":
    case "store_unavailable":
    case "lock_timeout":
    case "conflict":
      return EXIT.transient;
    case "protocol_error":
      return EXIT.protocol;
    case "store_corrupt":
    case "store_permission":
      return EXIT.ioError;
    case "invalid_config":
    case "not_found":
    case "insecure_endpoint":
    case "store_key":
    case "login_failed":
      return EXIT.config;
    case "cancelled":
      return EXIT.failure;
  }
}
