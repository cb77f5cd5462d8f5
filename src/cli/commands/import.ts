/**
 * `tokenkeeper import mcp-remote <mcp-server-url>`: adopt the authorization mcp-remote holds
 * for a server (its registered client and tokens), so switching needs no new sign-in. Nothing
 * secret is printed; mcp-remote's files are read, never changed.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError, EXIT } from "../../core/errors.js";
import { assertConnectorName } from "../../core/record.js";
import { TokenManager } from "../../manager/token-manager.js";
import { discover } from "../../oauth/discovery.js";
import { defaultConnectorName, summarize } from "../../oauth/login.js";
import {
  type McpRemoteFiles,
  mcpRemoteServerHash,
  orderConfigDirs,
  recordFromMcpRemote,
} from "../../oauth/mcp-remote-import.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import type { CliContext } from "../context.js";
import { writeLine, writeWireJson } from "../output.js";
import { openCliStore } from "../runtime.js";
import { loginJson, nextCommands, renderSummary } from "./login.js";

const USAGE = `Usage: tokenkeeper import mcp-remote <mcp-server-url> [options]

Adopts the authorization mcp-remote already holds for the server (its registered client and
tokens), so switching to Tokenkeeper needs no new sign-in. Give the server URL exactly as it
appears in your mcp-remote configuration: mcp-remote files its credentials under a hash of it.

Options:
  --name NAME          connector name (default: the server's host)
  --config-dir DIR     mcp-remote's config directory (default: MCP_REMOTE_CONFIG_DIR, else ~/.mcp-auth)
  --hash HEX           the files' name prefix (the 32 hex digits before _tokens.json), when
                       mcp-remote ran with options that change it (--header, --resource, …)
  --store URL          connector store (default: TOKENKEEPER_STORE, else the state directory)
  --json               print the summary as JSON

After importing, replace mcp-remote with \`tokenkeeper proxy NAME\` for that server: both holding
the same refresh token would make the server, which rotates it, revoke the grant.
Exit codes: 0 imported, 64 usage, 75 try later, 76 server protocol error, 78 nothing to import
or a file that does not validate.`;

export const importCommand = interactiveCommand({
  name: "import",
  summary: "adopt existing mcp-remote authorizations without signing in again",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    name: { type: "string" },
    "config-dir": { type: "string" },
    hash: { type: "string" },
    store: { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals[0] !== "mcp-remote")
    throw new UsageError(
      positionals.length === 0 ? "missing the source: mcp-remote" : `cannot import from "${positionals[0]}"`,
    );
  if (positionals.length !== 2) throw new UsageError("give exactly one <mcp-server-url>");
  const serverUrl = positionals[1]!;
  if (!URL.canParse(serverUrl)) throw new UsageError(`not a URL: ${serverUrl}`);
  const name = values.name ?? defaultConnectorName(serverUrl);
  assertConnectorName(name);
  const base =
    values["config-dir"] ?? ctx.env.MCP_REMOTE_CONFIG_DIR ?? join(ctx.env.HOME || homedir(), ".mcp-auth");
  const hash = values.hash?.toLowerCase();
  if (hash !== undefined && !/^[0-9a-f]{32}$/.test(hash))
    throw new UsageError("--hash takes the 32 hex digits mcp-remote names the files with");
  const files = await findFiles(base, serverUrl, hash);

  const store = await openCliStore(values.store, ctx);
  const manager = new TokenManager({ store, clock: ctx.clock });
  try {
    if (await store.get(name))
      throw new ConfigError(
        `connector "${name}" already exists; choose another --name, or run \`tokenkeeper logout ${name}\` first`,
        { connector: name },
      );
    const discovery = await discover(serverUrl, {
      clock: ctx.clock,
      ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
      signal: ctx.signal,
    });
    const record = recordFromMcpRemote({ name, files, discovery, now: ctx.clock.now() });
    // Saved like any login (under the refresh lock, merged if one landed meanwhile).
    const saved = await manager.saveLoginRecord(record, null, { signal: ctx.signal });
    const summary = summarize(saved.record, false);
    const warnings = [
      ...summary.warnings,
      `stop using mcp-remote for ${serverUrl} (use \`tokenkeeper proxy ${name}\`): two holders of one refresh token make a rotating server revoke the grant`,
    ];
    const next = nextCommands(summary);
    if (values.json)
      writeWireJson(ctx, { ok: true, imported_from: files.where, ...loginJson(summary), next });
    else {
      ctx.stdout.write(`Imported from mcp-remote (${files.where}).\n`);
      ctx.stdout.write(renderSummary(summary, next));
    }
    for (const warning of warnings) writeLine(ctx.stderr, `WARNING: ${warning}`);
    return EXIT.ok;
  } finally {
    await manager.close();
    await store.close();
  }
}

async function readJson(path: string, file: string): Promise<unknown> {
  const text = await readFile(path, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`mcp-remote's ${file} is not valid JSON`, { problem: "mcp_remote_invalid", file });
  }
}

/** The client info and tokens files for the server, from the best version directory holding both. */
async function findFiles(base: string, serverUrl: string, givenHash?: string): Promise<McpRemoteFiles> {
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT")
      throw new ConfigError(
        `no mcp-remote config directory at ${base} (set --config-dir or MCP_REMOTE_CONFIG_DIR)`,
        {
          problem: "mcp_remote_not_found",
        },
      );
    throw error;
  }
  // mcp-remote hashes the URL as it was given; a trailing slash added or dropped is another hash.
  const variants = [
    ...new Set([serverUrl, serverUrl.replace(/\/+$/, ""), `${serverUrl.replace(/\/+$/, "")}/`]),
  ];
  const hashes = givenHash ? [givenHash] : variants.map((url) => mcpRemoteServerHash(url));
  const dirs = orderConfigDirs(entries);
  let others = 0;
  for (const dir of dirs) {
    const names = await readdir(join(base, dir)).catch(() => [] as string[]);
    others += names.filter((n) => n.endsWith("_tokens.json")).length;
    for (const hash of hashes) {
      const infoPath = join(base, dir, `${hash}_client_info.json`);
      const tokensPath = join(base, dir, `${hash}_tokens.json`);
      let written: number;
      try {
        await stat(infoPath);
        written = (await stat(tokensPath)).mtimeMs;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      return {
        clientInfo: await readJson(infoPath, "client_info.json"),
        tokens: await readJson(tokensPath, "tokens.json"),
        tokensWrittenAt: Math.floor(written),
        where: join(base, dir),
      };
    }
  }
  throw new ConfigError(
    `mcp-remote holds no client and tokens for ${serverUrl} in ${base}${dirs.length ? ` (looked in ${dirs.join(", ")}; ${others} other authorization${others === 1 ? "" : "s"} there)` : ""}; give the URL exactly as in the mcp-remote configuration (or --hash when it ran with --header, --resource or similar), or log in with \`tokenkeeper login ${serverUrl}\``,
    { problem: "mcp_remote_not_found" },
  );
}
