/**
 * The configuration a local MCP client needs to launch `tokenkeeper proxy`: pure text, so the
 * CLI can print it and the documentation can show exactly what it prints.
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
  /** The command that starts Tokenkeeper (default "tokenkeeper"). */
  command?: string;
}

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
    command: input.command ?? "tokenkeeper",
    args: input.args,
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
        input.command ?? "tokenkeeper",
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
