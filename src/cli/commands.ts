/**
 * The command table. One file per command, loaded only when that command runs: every CLI call
 * (a `headersHelper`, `$(tokenkeeper token NAME)`, sixteen cron jobs at once) pays for its own
 * command's imports and nothing else. The name and summary live here so `--help` loads nothing.
 */
import type { Command } from "./context.js";

export interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<Command>;
}

export const commands: CommandEntry[] = [
  // (commands register here, one entry each, sorted by name)
  {
    name: "config",
    summary: "show or change a connector's settings (refresh window, notifications, headers)",
    load: async () => (await import("./commands/config.js")).configCommand,
  },
  {
    name: "doctor",
    summary: "check an MCP server's authorization setup, with a fix for each problem",
    load: async () => (await import("./commands/doctor.js")).doctorCommand,
  },
  {
    name: "ensure",
    summary: "preflight for a scheduled job: are tokens good for the whole run?",
    load: async () => (await import("./commands/ensure.js")).ensureCommand,
  },
  {
    name: "headers",
    summary: "print the Authorization header as JSON (for Claude Code's headersHelper)",
    load: async () => (await import("./commands/headers.js")).headersCommand,
  },
  {
    name: "import",
    summary: "adopt existing mcp-remote authorizations without signing in again",
    load: async () => (await import("./commands/import.js")).importCommand,
  },
  {
    name: "keepalive",
    summary: "refresh idle connectors and warn before refresh tokens expire (cron, systemd, or service)",
    load: async () => (await import("./commands/keepalive.js")).keepaliveCommand,
  },
  {
    name: "login",
    summary: "authorize a connector for an MCP server (the one human step)",
    load: async () => (await import("./commands/login.js")).loginCommand,
  },
  {
    name: "logout",
    summary: "remove a connector, optionally revoking its grant at the server",
    load: async () => (await import("./commands/logout.js")).logoutCommand,
  },
  {
    name: "proxy",
    summary: "stdio MCP server that relays to a remote server with fresh tokens (replaces mcp-remote)",
    load: async () => (await import("./commands/proxy.js")).proxyCommand,
  },
  {
    name: "run",
    summary: "run a command with fresh tokens for its whole run (preflight first)",
    load: async () => (await import("./commands/run.js")).runCommand,
  },
  {
    name: "status",
    summary: "show connectors' health, token lifetimes and refresh history (no secrets)",
    load: async () => (await import("./commands/status.js")).statusCommand,
  },
  {
    name: "store",
    summary: "prepare, describe, re-key or migrate the connector store",
    load: async () => (await import("./commands/store.js")).storeCommand,
  },
  {
    name: "token",
    summary: "print a valid access token (for curl and scripts)",
    load: async () => (await import("./commands/token.js")).tokenCommand,
  },
];
