/**
 * A connector's own settings, as `tokenkeeper config NAME KEY VALUE` sets them: one table of
 * keys, each with its parser (validation at the edge: a bad value never reaches a record) and
 * its display (webhook paths and header values can be secrets: never shown). Pure.
 */
import { formatDuration, parseDuration } from "../core/duration.js";
import { ConfigError } from "../core/errors.js";
import type { ConnectorSettings } from "../core/record.js";
import { isLoopbackHost } from "../oauth/http.js";

/** Headers the MCP transport or Tokenkeeper itself manages: a connector or a flag cannot override them. */
export const RESERVED_HEADERS = new Set([
  "authorization",
  "mcp-session-id",
  "mcp-protocol-version",
  "content-type",
  "accept",
  "last-event-id",
]);
/** RFC 9110 §5.1: a field name is a token. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** The longest a duration setting may be: a refresh-ahead window or a lifetime beyond a year is a typo. */
const MAX_DURATION_MS = 366 * 24 * 3600_000;

export interface SettingSpec {
  key: string;
  /** What it does, for `config --help` and docs/configuration.md. */
  help: string;
  set(settings: ConnectorSettings, value: string): ConnectorSettings;
  unset(settings: ConnectorSettings): ConnectorSettings;
}

function duration(key: string, value: string, { allowZero }: { allowZero: boolean }): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (error) {
    throw new ConfigError(`${key}: ${(error as Error).message}`, { setting: key });
  }
  if (ms < 0 || (!allowZero && ms === 0) || ms > MAX_DURATION_MS)
    throw new ConfigError(`${key} must be ${allowZero ? "0 or more" : "more than 0"} and at most 366d`, {
      setting: key,
    });
  return ms;
}

function without<K extends keyof ConnectorSettings>(s: ConnectorSettings, key: K): ConnectorSettings {
  const { [key]: _dropped, ...rest } = s;
  return rest;
}

export const SETTINGS: readonly SettingSpec[] = [
  {
    key: "refresh_ahead",
    help: "refresh this long before the access token expires (a duration, e.g. 5m); the default scales with the token's lifetime",
    set: (s, v) => ({ ...s, refreshAheadMs: duration("refresh_ahead", v, { allowZero: true }) }),
    unset: (s) => without(s, "refreshAheadMs"),
  },
  {
    key: "refresh_token_lifetime",
    help: "the refresh token's absolute lifetime from its first issue, when the provider documents one the server does not state (e.g. 90d)",
    set: (s, v) => ({
      ...s,
      refreshTokenLifetimeMs: duration("refresh_token_lifetime", v, { allowZero: false }),
    }),
    unset: (s) => without(s, "refreshTokenLifetimeMs"),
  },
  {
    key: "notify_command",
    help: "run this (sh -c) with the record as JSON on stdin when a human is needed; wins over --notify-command",
    set: (s, v) => {
      if (!v.trim()) throw new ConfigError("notify_command must not be empty", { setting: "notify_command" });
      if (/[\r\n\0]/.test(v))
        throw new ConfigError("notify_command must be one line", { setting: "notify_command" });
      return { ...s, notifyCommand: v };
    },
    unset: (s) => without(s, "notifyCommand"),
  },
  {
    key: "notify_webhook",
    help: "POST the record as JSON to this URL when a human is needed (HTTPS; HTTP only to loopback); wins over --notify-webhook",
    set: (s, v) => {
      let u: URL;
      try {
        u = new URL(v);
      } catch {
        throw new ConfigError("notify_webhook is not a URL", { setting: "notify_webhook" });
      }
      if (!(u.protocol === "https:" || (u.protocol === "http:" && isLoopbackHost(u.hostname))))
        throw new ConfigError("notify_webhook must be HTTPS (plain HTTP only to a loopback address)", {
          setting: "notify_webhook",
        });
      return { ...s, notifyWebhook: u.href };
    },
    unset: (s) => without(s, "notifyWebhook"),
  },
  {
    key: "proxy_token_wait",
    help: "how long a proxy call waits for a token that must be refreshed first, then is answered with a transient error while the refresh goes on (default 3s; --token-wait and TOKENKEEPER_PROXY_TOKEN_WAIT win)",
    set: (s, v) => ({ ...s, proxyTokenWaitMs: duration("proxy_token_wait", v, { allowZero: true }) }),
    unset: (s) => without(s, "proxyTokenWaitMs"),
  },
];

/** `header.NAME`: an extra header sent to the MCP server (proxy), e.g. an API gateway key. */
function headerSpec(key: string): SettingSpec | undefined {
  if (!key.startsWith("header.")) return undefined;
  const name = key.slice("header.".length);
  if (!HEADER_NAME.test(name))
    throw new ConfigError(`${key}: "${name.slice(0, 80)}" is not a header name`, { setting: key });
  if (RESERVED_HEADERS.has(name.toLowerCase()))
    throw new ConfigError(
      name.toLowerCase() === "authorization"
        ? "header.Authorization: Tokenkeeper sends the connector's token itself"
        : `${key}: the MCP transport manages this header`,
      { setting: key },
    );
  const others = (s: ConnectorSettings) =>
    Object.fromEntries(
      Object.entries(s.headers ?? {}).filter(([n]) => n.toLowerCase() !== name.toLowerCase()),
    );
  return {
    key,
    help: "an extra header for the MCP server",
    set: (s, v) => {
      // RFC 9110 §5.5: no CR, LF or NUL in a field value (a header injection otherwise).
      if (/[\r\n\0]/.test(v))
        throw new ConfigError(`${key}: a header value must be one line`, { setting: key });
      return { ...s, headers: { ...others(s), [name]: v.trim() } };
    },
    unset: (s) => {
      const rest = others(s);
      return Object.keys(rest).length ? { ...s, headers: rest } : without(s, "headers");
    },
  };
}

/** The spec of a key, or a ConfigError naming the keys there are. */
export function settingSpec(key: string): SettingSpec {
  const spec = SETTINGS.find((s) => s.key === key) ?? headerSpec(key);
  if (!spec)
    throw new ConfigError(
      `unknown setting "${key.slice(0, 80)}"; the settings are ${[...SETTINGS.map((s) => s.key), "header.NAME"].join(", ")}`,
      { setting: key.slice(0, 80) },
    );
  return spec;
}

/**
 * What `config NAME` shows, in the wire dialect: durations in ms beside a readable form; the
 * webhook by origin only and headers by name only, since either may hold a secret.
 */
export function settingsView(s: ConnectorSettings): Record<string, unknown> {
  return {
    refresh_ahead_ms: s.refreshAheadMs ?? null,
    refresh_token_lifetime_ms: s.refreshTokenLifetimeMs ?? null,
    notify_command: s.notifyCommand ?? null,
    notify_webhook: s.notifyWebhook ? `${new URL(s.notifyWebhook).origin}/…` : null,
    headers: Object.keys(s.headers ?? {}),
    proxy_token_wait_ms: s.proxyTokenWaitMs ?? null,
  };
}

/** One line per setting for people. */
export function settingsLines(s: ConnectorSettings): string[] {
  const v = settingsView(s);
  const d = (ms: unknown) => (typeof ms === "number" ? formatDuration(ms) : "(default)");
  return [
    `refresh_ahead           ${d(v.refresh_ahead_ms)}`,
    `refresh_token_lifetime  ${d(v.refresh_token_lifetime_ms)}`,
    `notify_command          ${v.notify_command ?? "(none: --notify-command or TOKENKEEPER_NOTIFY_COMMAND)"}`,
    `notify_webhook          ${v.notify_webhook ?? "(none: --notify-webhook or TOKENKEEPER_NOTIFY_WEBHOOK)"}`,
    `proxy_token_wait        ${d(v.proxy_token_wait_ms)}`,
    `headers                 ${(v.headers as string[]).length ? (v.headers as string[]).map((h) => `${h}: (hidden)`).join(", ") : "(none)"}`,
  ];
}
