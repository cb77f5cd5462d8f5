/**
 * `tokenkeeper proxy <NAME|URL>`: a local stdio MCP server bridged to a remote one, with tokens
 * kept fresh; the drop-in replacement for `npx mcp-remote URL` in a client's configuration.
 * stdout is the protocol channel: everything else goes to stderr. `--print-config` prints the
 * client configuration that launches it instead.
 */
import { Readable } from "node:stream";
import {
  ConfigError,
  EXIT,
  NotFoundError,
  ReauthRequiredError,
  TokenkeeperError,
} from "../../core/errors.js";
import type { ConnectorRecord } from "../../core/record.js";
import { HEADER_NAME, RESERVED_HEADERS } from "../../manager/settings.js";
import { DEFAULT_BROWSER_TIMEOUT_MS } from "../../oauth/browser-login.js";
import { canonicalServerUri } from "../../oauth/discovery.js";
import type { Store } from "../../store/types.js";
import {
  CLIENT_KINDS,
  type ClientKind,
  configSnippet,
  headersHelperSnippet,
  type Launcher,
  PATH_LAUNCHER,
  type Snippet,
  type SnippetInput,
} from "../../surfaces/proxy/config.js";
import { type ResolvedTarget, runProxy, type TransportChoice } from "../../surfaces/proxy/proxy.js";
import { BrowserSignIn } from "../../surfaces/proxy/sign-in.js";
import { skipRecordJson } from "../../surfaces/skip-record.js";
import { durationFlag, interactiveCommand, type ParsedFlags, parseFlags, UsageError } from "../args.js";
import { type CliContext, networkDeps } from "../context.js";
import { writeJson, writeLine } from "../output.js";
import { openCliStore } from "../runtime.js";
import { openUnattended, UNATTENDED_HELP, UNATTENDED_OPTIONS } from "../unattended.js";
import { VERSION } from "../version.js";
import { loginCommand } from "./login.js";

const TRANSPORTS: readonly TransportChoice[] = ["auto", "streamable-http", "sse"];

type LauncherKind = "absolute" | "path" | "npx";
const LAUNCHERS: readonly LauncherKind[] = ["absolute", "path", "npx"];

/** How the client's configuration starts Tokenkeeper (see --launcher). */
function launcherFor(kind: LauncherKind, ctx: CliContext): Launcher {
  if (kind === "npx") return { command: "npx", args: ["-y", `tokenkeeper@${VERSION}`] };
  if (kind === "path" || !ctx.self) return PATH_LAUNCHER;
  return ctx.self;
}

const USAGE = `Usage: tokenkeeper proxy <NAME|URL> [options]

Serves MCP on stdin/stdout for a local client and relays every message to the remote MCP
server of connector NAME (or the connector logged in to URL), with its tokens kept fresh.
When a human must log in again, every request is answered with an error naming the command
to run; the proxy keeps running and reconnects by itself after the login.

Options:
  --transport T          streamable-http | sse | auto (default auto: Streamable HTTP, falling
                         back to HTTP+SSE for older servers)
  --header "Name: value" extra header for every request to the server (repeatable)
  --no-auth              URL only: the server needs no authorization; relay without a token
                         (no connector, nothing stored)
  --interactive          when re-authorization is needed and a terminal is attached, open the
                         browser login (never otherwise)
  --reauth browser       for GUI clients (Claude Desktop, Cursor): when a human is needed, open
                         the browser sign-in once (one page for every proxy of the connector),
                         answer calls meanwhile with reason sign_in_open and the page's URL, and
                         resume without a restart once signed in. Default: never
  --token-wait DURATION  how long a call waits for a token that must be refreshed first
                         (default: TOKENKEEPER_PROXY_TOKEN_WAIT, else the connector's
                         proxy_token_wait setting, else 3s); then the call is
                         answered with a transient error (-32031) and the refresh goes on
  --verbose              log transport details to stderr
  --print-config         print the configuration that runs this proxy, and exit
  --client C             with --print-config: claude-desktop | claude-code | cursor (default: all)
  --headers-helper       with --print-config: for Claude Code, no proxy: an HTTP server entry
                         whose headersHelper runs \`tokenkeeper headers NAME\`
  --launcher L           with --print-config: how the client starts Tokenkeeper: absolute
                         (default: this node binary and script by absolute path, immune to a
                         GUI app's short PATH), path (\`tokenkeeper\` from PATH), npx
                         (\`npx -y tokenkeeper@VERSION\`, for a published release)
  --json                 with --print-config: print the snippets as JSON
${UNATTENDED_HELP}

Exit codes: 0 after the client closed stdin or on SIGTERM, 64 usage, 77 ended while waiting
for a re-authorization, 78 no such connector.`;

export const proxyCommand = interactiveCommand({
  name: "proxy",
  summary: "stdio MCP server that relays to a remote server with fresh tokens (replaces mcp-remote)",
  usage: USAGE,
  run,
});

const OPTIONS = {
  transport: { type: "string" },
  header: { type: "string", multiple: true },
  interactive: { type: "boolean" },
  reauth: { type: "string" },
  "no-auth": { type: "boolean" },
  verbose: { type: "boolean" },
  "token-wait": { type: "string" },
  "print-config": { type: "boolean" },
  client: { type: "string" },
  "headers-helper": { type: "boolean" },
  launcher: { type: "string" },
  json: { type: "boolean" },
  ...UNATTENDED_OPTIONS,
} as const;

type ProxyFlags = ParsedFlags<typeof OPTIONS>["values"];

export function parseHeaders(values: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const raw of values) {
    const colon = raw.indexOf(":");
    const name = colon > 0 ? raw.slice(0, colon).trim() : "";
    if (!HEADER_NAME.test(name)) throw new ConfigError(`--header "${raw.slice(0, 80)}" is not "Name: value"`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw new ConfigError(
        name.toLowerCase() === "authorization"
          ? "--header Authorization: Tokenkeeper sends the connector's token itself; drop this header"
          : `--header ${name}: the MCP transport manages this header`,
      );
    }
    headers[name] = raw.slice(colon + 1).trim();
  }
  return headers;
}

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, OPTIONS);
  if (positionals.length !== 1)
    throw new UsageError(positionals.length === 0 ? "missing <NAME|URL>" : "give exactly one <NAME|URL>");
  const target = positionals[0]!;
  const transport = (values.transport ?? "auto") as TransportChoice;
  if (!TRANSPORTS.includes(transport))
    throw new UsageError(`--transport must be one of ${TRANSPORTS.join(", ")}`);
  let headers: Record<string, string>;
  try {
    headers = parseHeaders(values.header ?? []);
  } catch (error) {
    // A bad --header is a bad command line: answered with the usage, like any other flag.
    throw new UsageError((error as Error).message);
  }
  if (values.client !== undefined && !CLIENT_KINDS.includes(values.client as ClientKind)) {
    throw new UsageError(`--client must be one of ${CLIENT_KINDS.join(", ")}`);
  }
  if (
    !values["print-config"] &&
    (values.client !== undefined || values.json || values["headers-helper"] || values.launcher !== undefined)
  ) {
    throw new UsageError("--client, --headers-helper, --launcher and --json go with --print-config");
  }
  if (values.launcher !== undefined && !LAUNCHERS.includes(values.launcher as LauncherKind)) {
    throw new UsageError(`--launcher must be one of ${LAUNCHERS.join(", ")}`);
  }
  if (values["headers-helper"] && values.client !== undefined && values.client !== "claude-code") {
    throw new UsageError("--headers-helper is for --client claude-code (Claude Code's headersHelper)");
  }

  // Checked before anything runs: a bad value must not surface at the first slow refresh.
  const tokenWait = values["token-wait"] ?? ctx.env.TOKENKEEPER_PROXY_TOKEN_WAIT;
  const tokenWaitMs =
    tokenWait === undefined
      ? undefined
      : durationFlag(
          values["token-wait"] !== undefined ? "--token-wait" : "TOKENKEEPER_PROXY_TOKEN_WAIT",
          tokenWait,
        );

  if (values.reauth !== undefined && values.reauth !== "browser" && values.reauth !== "never")
    throw new UsageError("--reauth must be browser or never");
  if (values.reauth === "browser" && values["no-auth"])
    throw new UsageError("--reauth browser needs a connector; --no-auth has none");

  if (values["no-auth"] && !/^https?:\/\//i.test(target))
    throw new UsageError("--no-auth takes the server's URL, not a connector name");
  if (values["no-auth"] && values["print-config"])
    throw new UsageError("--print-config describes a connector; --no-auth has none");
  const now = () => ctx.clock.now();
  if (values["print-config"]) {
    const store = await openCliStore(values.store, ctx);
    try {
      return await printConfig(ctx, store, resolver(store, target, now), target, values, transport);
    } finally {
      await store.close();
    }
  }
  return serve(ctx, target, { transport, headers, values, tokenWaitMs });
}

interface Resolved extends ResolvedTarget {
  record?: ConnectorRecord;
}

/** --no-auth: a server that needs no authorization, relayed as is (MCP authorization is optional). */
function openResolver(target: string): () => Promise<Resolved> {
  const url = canonicalServerUri(target);
  return async () => ({ connector: url, url, open: true });
}

/** NAME is a connector; a URL is looked up among the connectors by their server URL. */
function resolver(store: Store, target: string, now: () => number): () => Promise<Resolved> {
  const isUrl = /^https?:\/\//i.test(target);
  return async () => {
    if (!isUrl) {
      const stored = await store.get(target);
      if (!stored) throw new NotFoundError(target, store.location);
      return { connector: target, url: stored.record.server.mcpUrl, record: stored.record };
    }
    const url = canonicalServerUri(target);
    const matches: ConnectorRecord[] = [];
    for (const name of await store.list()) {
      const stored = await store.get(name).catch(() => null);
      if (!stored) continue;
      let theirs: string;
      try {
        theirs = canonicalServerUri(stored.record.server.mcpUrl);
      } catch {
        continue;
      }
      if (theirs === url) matches.push(stored.record);
    }
    // Several logins to one server: prefer one that works.
    const record = matches.find((r) => r.state.health !== "reauth_required") ?? matches[0];
    if (record) return { connector: record.name, url: record.server.mcpUrl, record };
    throw new ReauthRequiredError({
      connector: url,
      reason: "not_authorized",
      since: now(),
      action: `run \`tokenkeeper login ${url}\` (no connector in ${store.location} is logged in to this server)`,
    });
  };
}

async function serve(
  ctx: CliContext,
  target: string,
  opts: {
    transport: TransportChoice;
    headers: Record<string, string>;
    values: ProxyFlags;
    tokenWaitMs: number | undefined;
  },
): Promise<number> {
  const { values } = opts;
  // The same plumbing as the other unattended commands: --events, --notify-*, --timeout, and
  // a notification on every transition to reauth_required.
  const session = await openUnattended(ctx, values);
  const resolve = values["no-auth"]
    ? openResolver(target)
    : resolver(session.store, target, () => ctx.clock.now());
  const terminal = Boolean((ctx.stderr as { isTTY?: boolean }).isTTY);
  if (values.interactive && !terminal) {
    ctx.stderr.write(
      "tokenkeeper proxy: --interactive needs a terminal on stderr; without one the proxy never opens a browser\n",
    );
  }
  let connectorHeaders: Record<string, string> = {};
  try {
    const outcome = await runProxy({
      manager: session.manager,
      resolve: async () => {
        const resolved = await resolve();
        connectorHeaders = resolved.record?.settings.headers ?? {};
        return {
          connector: resolved.connector,
          url: resolved.url,
          ...(resolved.open ? { open: true } : {}),
          ...(resolved.record?.settings.proxyTokenWaitMs !== undefined
            ? { tokenWaitMs: resolved.record.settings.proxyTokenWaitMs }
            : {}),
        };
      },
      transport: opts.transport,
      // Connector settings first, the command line wins. Read when the connection opens, after resolution.
      get headers() {
        return { ...connectorHeaders, ...opts.headers };
      },
      stdin: ctx.stdin,
      stdout: ctx.stdout,
      log: (line) => ctx.stderr.write(`${line}\n`),
      onSkip: (record) => {
        ctx.stderr.write(`${skipRecordJson(record, { event: "proxy_skip" })}\n`);
        session.events?.record(record, "proxy");
      },
      ...(values.interactive && terminal
        ? { interactiveLogin: (record: ConnectorRecord) => interactiveLogin(ctx, record, values.store) }
        : {}),
      ...(values.reauth === "browser"
        ? {
            signIn: new BrowserSignIn({
              store: session.store,
              clock: ctx.clock,
              loginTimeoutMs: DEFAULT_BROWSER_TIMEOUT_MS,
              login: (record, onUrl) => browserSignIn(ctx, session.store, record, onUrl),
            }),
          }
        : {}),
      ...networkDeps(ctx),
      ...(values.verbose ? { verbose: true } : {}),
      ...(opts.tokenWaitMs !== undefined ? { tokenWaitMs: opts.tokenWaitMs } : {}),
    });
    return outcome.exitCode;
  } finally {
    await session.close();
  }
}

/**
 * `--reauth browser`: the browser login for a GUI client, which has no terminal: the URL goes
 * to the proxy (for its answers) and stderr (the client's log), and is opened with $BROWSER or
 * the system's opener. Only for a browser (authorization-code) connector.
 */
async function browserSignIn(
  ctx: CliContext,
  store: Store,
  record: ConnectorRecord,
  onUrl: (url: string) => void,
): Promise<void> {
  if (record.grant !== "authorization_code")
    throw new ConfigError(`connector "${record.name}" does not sign in with a browser (${record.grant})`);
  const { login } = await import("../../manager/login.js");
  const { openBrowser } = await import("../../oauth/open-browser.js");
  const say = (line: string) => ctx.stderr.write(`tokenkeeper proxy: ${line}\n`);
  await login(
    {
      mcpUrl: record.server.mcpUrl,
      name: record.name,
      flow: "browser",
      ...(record.scope ? { scope: record.scope } : {}),
      timeoutMs: DEFAULT_BROWSER_TIMEOUT_MS,
    },
    {
      store,
      ...networkDeps(ctx),
      note: (line) => say(line),
      presentUrl: async (url) => {
        onUrl(url);
        say(`--reauth browser: sign in to "${record.name}" at ${url}`);
        const opened = await openBrowser(url, { env: ctx.env, usePlatformOpener: !ctx.env.CI });
        if (!opened.opened)
          say(`could not open a browser${opened.error ? ` (${opened.error})` : ""}; open the URL yourself`);
      },
      presentDeviceCode: () => {
        throw new ConfigError("--reauth browser runs the browser flow only");
      },
    },
  );
}

/** The login command itself, with its output on stderr: stdout belongs to the MCP client. */
async function interactiveLogin(
  ctx: CliContext,
  record: ConnectorRecord,
  storeUrl: string | undefined,
): Promise<void> {
  const args = [record.server.mcpUrl, "--name", record.name];
  if (record.grant === "device_code") args.push("--device");
  if (record.scope) args.push("--scope", record.scope);
  if (storeUrl) args.push("--store", storeUrl);
  const code = await loginCommand.run(args, {
    ...ctx,
    stdout: ctx.stderr,
    stdin: Readable.from([]),
    interactive: true,
  });
  if (code !== EXIT.ok) throw new TokenkeeperError("login_failed", `tokenkeeper login exited with ${code}`);
}

async function printConfig(
  ctx: CliContext,
  store: Store,
  resolve: () => Promise<Resolved>,
  target: string,
  values: ProxyFlags,
  transport: TransportChoice,
): Promise<number> {
  // A name that resolves is written as the name (stable across URL changes); a URL with no
  // connector yet is written as given, with a reminder to log in first.
  let serverName: string;
  let proxyTarget: string;
  let resolved: Resolved | undefined;
  try {
    resolved = await resolve();
    serverName = resolved.connector;
    proxyTarget = resolved.connector;
  } catch (error) {
    if (!(error instanceof TokenkeeperError)) throw error;
    serverName = /^https?:\/\//i.test(target) ? new URL(target).hostname : target;
    proxyTarget = target;
    ctx.stderr.write(`tokenkeeper proxy: note: ${error.message}\n`);
  }
  const args = ["proxy", proxyTarget];
  if (transport !== "auto") args.push("--transport", transport);
  for (const h of values.header ?? []) args.push("--header", h);
  for (const flag of [
    "events",
    "notify-command",
    "notify-webhook",
    "timeout",
    "token-wait",
    "reauth",
  ] as const) {
    const value = values[flag];
    if (typeof value === "string") args.push(`--${flag}`, value);
  }
  const env = storeEnv(ctx, store, values.store);
  const launch = launcherFor((values.launcher ?? "absolute") as LauncherKind, ctx);
  let snippets: Snippet[];
  if (values["headers-helper"]) {
    if (!resolved) throw new UsageError(`--headers-helper needs a connector: log in to ${target} first`);
    snippets = [
      headersHelperSnippet({ serverName, connector: resolved.connector, url: resolved.url, env, launch }),
    ];
  } else {
    const input: SnippetInput = { serverName, args, env, launch };
    const clients = values.client ? [values.client as ClientKind] : CLIENT_KINDS;
    snippets = clients.map((c) => configSnippet(c, input));
  }
  if (values.json) {
    writeJson(ctx, {
      server: serverName,
      command: launch.command,
      args: [...launch.args, ...args],
      env,
      snippets,
    });
    return EXIT.ok;
  }
  for (const s of snippets) {
    writeLine(ctx.stdout, `# ${s.client}: ${s.where}`);
    writeLine(ctx.stdout, s.text);
    writeLine(ctx.stdout);
  }
  writeLine(
    ctx.stdout,
    launch === ctx.self
      ? "# Absolute paths of this machine's node and Tokenkeeper (GUI apps get a short PATH): print again after changing Node version or reinstalling."
      : "# If the client cannot find the command, use --launcher absolute (GUI apps get a short PATH).",
  );
  return EXIT.ok;
}

/** Where the client's copy of the proxy must look for connectors: only what was chosen explicitly, never a credential. */
function storeEnv(ctx: CliContext, store: Store, flag: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  const chosen = flag ?? ctx.env.TOKENKEEPER_STORE;
  if (chosen) {
    env.TOKENKEEPER_STORE = store.location;
    if (store.location !== chosen && /:\/\/[^/@]*:[^/@]*@/.test(chosen)) {
      ctx.stderr.write(
        "tokenkeeper proxy: note: the snippet leaves the store's password out; add it in the client's configuration\n",
      );
    }
    if (ctx.env.TOKENKEEPER_KEY_FILE) env.TOKENKEEPER_KEY_FILE = ctx.env.TOKENKEEPER_KEY_FILE;
    else if (ctx.env.TOKENKEEPER_KEY)
      ctx.stderr.write(
        "tokenkeeper proxy: note: the store is sealed with TOKENKEEPER_KEY; give the client the same key (not printed here)\n",
      );
  } else if (ctx.env.TOKENKEEPER_HOME) {
    env.TOKENKEEPER_HOME = ctx.env.TOKENKEEPER_HOME;
  }
  return env;
}
