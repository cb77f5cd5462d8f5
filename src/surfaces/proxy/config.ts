/**
 * The configuration a local MCP client needs to launch `tokenkeeper proxy` (or, for Claude Code,
 * to call `tokenkeeper headers` as its headersHelper): pure text, so the CLI can print it and the
 * documentation can show exactly what it prints.
 *
 * GUI clients (Claude Desktop, Cursor) start servers with a short PATH, without nvm's or a
 * version manager's directories, so `"command": "tokenkeeper"` (or `#!/usr/bin/env node`) fails
 * there with "node: No such file or directory". The launcher therefore defaults to absolute
 * paths: this machine's node binary and Tokenkeeper's script.
 */

export type ClientKind = "claude-desktop" | "claude-code" | "cursor";
export const CLIENT_KINDS: readonly ClientKind[] = ["claude-desktop", "claude-code", "cursor"];

export interface SnippetInput {
  /** The server's key in the client's configuration (usually the connector name). */
  serverName: string;
  /** The arguments after `tokenkeeper`: ["proxy", NAME, ...flags]. */
  args: string[];
  /** Environment the proxy needs (where the store is); never a secret. */
  env: Record<string, string>;
  /** How to start Tokenkeeper (default: `tokenkeeper` from PATH). */
  launch?: Launcher;
}

/** A command line that starts Tokenkeeper: `command` then `args`, then the subcommand. */
export interface Launcher {
  command: string;
  args: string[];
}

export const PATH_LAUNCHER: Launcher = { command: "tokenkeeper", args: [] };

export interface Snippet {
  client: ClientKind;
  /** Where the snippet goes, for a human. */
  where: string;
  /** JSON to merge into that file, or a shell command to run. */
  format: "json" | "shell";
  text: string;
}

function serverEntry(input: SnippetInput, withType: boolean): Record<string, unknown> {
  return {
    ...(withType ? { type: "stdio" } : {}),
    command: (input.launch ?? PATH_LAUNCHER).command,
    args: [...(input.launch ?? PATH_LAUNCHER).args, ...input.args],
    ...(Object.keys(input.env).length > 0 ? { env: input.env } : {}),
  };
}

/** POSIX shell quoting for a copy-pasteable command line. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function configSnippet(client: ClientKind, input: SnippetInput): Snippet {
  switch (client) {
    case "claude-desktop":
      return {
        client,
        where: 'claude_desktop_config.json (Settings → Developer → Edit Config), under "mcpServers"',
        format: "json",
        text: JSON.stringify({ mcpServers: { [input.serverName]: serverEntry(input, false) } }, null, 2),
      };
    case "cursor":
      return {
        client,
        where: '~/.cursor/mcp.json (all projects) or .cursor/mcp.json (one project), under "mcpServers"',
        format: "json",
        text: JSON.stringify({ mcpServers: { [input.serverName]: serverEntry(input, false) } }, null, 2),
      };
    case "claude-code": {
      const env = Object.entries(input.env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
      const words = [
        "claude",
        "mcp",
        "add",
        input.serverName,
        ...env,
        "--",
        (input.launch ?? PATH_LAUNCHER).command,
        ...(input.launch ?? PATH_LAUNCHER).args,
        ...input.args,
      ];
      return {
        client,
        where: "a shell (add `--scope user` for every project, or put the JSON form in .mcp.json)",
        format: "shell",
        text: words.map(shellQuote).join(" "),
      };
    }
  }
}

export interface HeadersHelperInput {
  serverName: string;
  /** The connector whose token `tokenkeeper headers` prints. */
  connector: string;
  /** The remote MCP endpoint Claude Code connects to directly. */
  url: string;
  env: Record<string, string>;
  launch?: Launcher;
}

/**
 * Claude Code without a proxy: an HTTP server entry whose `headersHelper` runs
 * `tokenkeeper headers NAME`, a command whose stdout is a JSON object of headers, run when
 * Claude Code connects or reconnects. Environment the CLI needs goes on the command line
 * through `env`, since the entry has no env of its own for the helper.
 */
export function headersHelperSnippet(input: HeadersHelperInput): Snippet {
  const launch = input.launch ?? PATH_LAUNCHER;
  const vars = Object.entries(input.env).map(([k, v]) => `${k}=${v}`);
  const helper = [
    ...(vars.length ? ["env", ...vars] : []),
    launch.command,
    ...launch.args,
    "headers",
    input.connector,
  ]
    .map(shellQuote)
    .join(" ");
  const entry = { type: "http", url: input.url, headersHelper: helper };
  return {
    client: "claude-code",
    where: `.mcp.json (one project) under "mcpServers", or: claude mcp add-json ${shellQuote(input.serverName)} '<the entry>' --scope user`,
    format: "json",
    text: JSON.stringify({ mcpServers: { [input.serverName]: entry } }, null, 2),
  };
}
