/**
 * `tokenkeeper login <mcp-server-url>`: the one step a human takes. Progress (the URL to open,
 * the device code) goes to stderr; the summary to stdout, or as one JSON object with --json.
 * No token, code, verifier or secret is ever printed.
 */

import { resolve as resolvePath } from "node:path";
import { formatDuration, isoTime, parseDuration } from "../../core/duration.js";
import { ConfigError, EXIT, TokenkeeperError } from "../../core/errors.js";
import { Secret } from "../../core/secret.js";
import { login } from "../../manager/login.js";
import type { DevicePrompt } from "../../oauth/device-login.js";
import type { LoginRequest, LoginSummary } from "../../oauth/login.js";
import { CALLBACK_HOSTS, type CallbackHost, isCallbackPath } from "../../oauth/loopback-callback.js";
import { openBrowser } from "../../oauth/open-browser.js";
import type { LoginFlow } from "../../oauth/registration.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import { type CliContext, networkDeps } from "../context.js";
import { writeLine, writeWireJson } from "../output.js";
import { openCliStore } from "../runtime.js";

export const DEFAULT_SECRET_ENV = "TOKENKEEPER_CLIENT_SECRET";

const USAGE = `Usage: tokenkeeper login <mcp-server-url> [options]

Authorizes Tokenkeeper for an MCP server, once; everything after this runs unattended.

Options:
  --name NAME                  connector name (default: the server's host)
  --scope "S1 S2"              scopes to request (default: what the server asks for)
  --browser                    authorization-code flow in a browser (the default for a new connector)
  --device                     device flow (RFC 8628): for hosts without a browser
  --client-credentials         machine-to-machine grant: no human is ever needed again
                               (without any of these three, logging in again keeps the connector's flow)
  --client-id ID               use a client registered with the provider
  --client-secret-env VAR      environment variable holding its secret (default ${DEFAULT_SECRET_ENV});
                               asked for on a terminal otherwise; never given on the command line
  --private-key-file FILE      authenticate the client with private_key_jwt (RFC 7523): a PEM
                               private key (EC, RSA or Ed25519); the store keeps the path, not the key
  --client-metadata-url URL    use this Client ID Metadata Document URL as the client id
  --authorization-server URL   pick one of several authorization servers the resource lists
  --callback-port PORT         fixed loopback port for the browser redirect (default: any free port)
  --callback-host HOST         the redirect URI's host: 127.0.0.1 (default) or localhost; the
                               listener binds 127.0.0.1 either way
  --callback-path PATH         the redirect URI's path (default /callback); with --callback-host
                               localhost and --callback-path /oauth/callback the redirect matches a
                               client registered for mcp-remote
  --no-browser                 print the authorization URL without opening a browser
  --timeout DURATION           how long to wait for the person (default 5m)
  --store URL                  connector store (default: TOKENKEEPER_STORE, else the state directory)
  --json                       print the summary as JSON

The authorization URL is always printed; it is opened with $BROWSER when set, else the
system's opener. Exit codes: 0 logged in, 64 usage, 75 try later, 76 server protocol error,
78 login refused or misconfigured.`;

export const loginCommand = interactiveCommand({
  name: "login",
  summary: "authorize a connector for an MCP server (the one human step)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  if (args.some((a) => a === "--client-secret" || a.startsWith("--client-secret="))) {
    throw new UsageError(
      "a client secret is never taken on the command line (shell history, ps); put it in an environment variable and pass --client-secret-env VAR",
    );
  }
  const { values, positionals } = parseFlags(args, {
    name: { type: "string" },
    scope: { type: "string" },
    browser: { type: "boolean" },
    device: { type: "boolean" },
    "client-credentials": { type: "boolean" },
    "client-id": { type: "string" },
    "client-secret-env": { type: "string" },
    "private-key-file": { type: "string" },
    "client-metadata-url": { type: "string" },
    "authorization-server": { type: "string" },
    "callback-port": { type: "string" },
    "callback-host": { type: "string" },
    "callback-path": { type: "string" },
    "no-browser": { type: "boolean" },
    timeout: { type: "string" },
    store: { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals.length !== 1)
    throw new UsageError(
      positionals.length === 0 ? "missing <mcp-server-url>" : "give exactly one <mcp-server-url>",
    );
  if ([values.device, values["client-credentials"], values.browser].filter(Boolean).length > 1) {
    throw new UsageError("--browser, --device and --client-credentials are different flows; choose one");
  }
  // No flag: login again the way the connector was logged in (browser for a new one).
  const flow: LoginFlow | undefined = values.device
    ? "device"
    : values["client-credentials"]
      ? "client_credentials"
      : values.browser
        ? "browser"
        : undefined;

  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    try {
      timeoutMs = parseDuration(values.timeout);
    } catch (error) {
      throw new UsageError(`--timeout: ${(error as Error).message}`);
    }
    if (timeoutMs <= 0) throw new UsageError("--timeout must be positive");
  }
  let callbackPort: number | undefined;
  if (values["callback-port"] !== undefined) {
    callbackPort = Number(values["callback-port"]);
    if (!Number.isInteger(callbackPort) || callbackPort < 1 || callbackPort > 65535)
      throw new UsageError("--callback-port must be a port number (1-65535)");
  }
  const callbackHost = values["callback-host"];
  if (callbackHost !== undefined && !(CALLBACK_HOSTS as readonly string[]).includes(callbackHost))
    throw new UsageError(
      `--callback-host must be one of ${CALLBACK_HOSTS.join(", ")}: the listener only binds loopback`,
    );
  const callbackPath = values["callback-path"];
  if (callbackPath !== undefined && !isCallbackPath(callbackPath))
    throw new UsageError("--callback-path must be an absolute path such as /oauth/callback (no query)");
  const json = Boolean(values.json);

  const privateKeyFile =
    values["private-key-file"] !== undefined ? resolvePath(values["private-key-file"]) : undefined;
  if (privateKeyFile !== undefined && values["client-id"] === undefined)
    throw new UsageError("--private-key-file needs --client-id: the key belongs to a registered client");
  let clientSecret: Secret | undefined;
  if (privateKeyFile !== undefined) {
    if (values["client-secret-env"] !== undefined)
      throw new UsageError(
        "--private-key-file and --client-secret-env are two ways to authenticate; give one",
      );
  } else if (values["client-id"] !== undefined) {
    clientSecret = await readClientSecret(ctx, values["client-id"], values["client-secret-env"]);
  } else if (values["client-secret-env"] !== undefined) {
    throw new UsageError("--client-secret-env only makes sense with --client-id");
  }

  const request: LoginRequest = {
    mcpUrl: positionals[0]!,
    ...(flow ? { flow } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
    ...(values.scope !== undefined ? { scope: values.scope } : {}),
    ...(values["client-id"] !== undefined ? { clientId: values["client-id"] } : {}),
    ...(clientSecret ? { clientSecret } : {}),
    ...(privateKeyFile !== undefined ? { privateKeyFile } : {}),
    ...(values["client-metadata-url"] !== undefined
      ? { clientMetadataUrl: values["client-metadata-url"] }
      : {}),
    ...(values["authorization-server"] !== undefined
      ? { authorizationServer: values["authorization-server"] }
      : {}),
    ...(callbackPort !== undefined ? { callbackPort } : {}),
    ...(callbackHost !== undefined ? { callbackHost: callbackHost as CallbackHost } : {}),
    ...(callbackPath !== undefined ? { callbackPath } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
  const waitText = formatDuration(timeoutMs ?? 5 * 60_000);
  const say = (line = "") => writeLine(ctx.stderr, line);

  const store = await openCliStore(values.store, ctx);
  try {
    say(`Discovering ${request.mcpUrl} …`);
    const result = await login(request, {
      store,
      ...networkDeps(ctx),
      note: (line) => say(line),
      presentUrl: async (url) => {
        say("");
        say(`Open this URL in a browser to authorize Tokenkeeper (waiting up to ${waitText}):`);
        say("");
        say(`  ${url}`);
        say("");
        if (values["no-browser"]) {
          say(remoteHint(url));
          return;
        }
        const unattended = !ctx.interactive || Boolean(ctx.env.CI);
        const secretEnv = values["client-secret-env"];
        const opened = await openBrowser(url, {
          env: ctx.env,
          ...(secretEnv ? { alsoStrip: [secretEnv] } : {}),
          usePlatformOpener: !unattended,
        });
        if (opened.opened) say(`Opened a browser (${opened.command}). Waiting for the authorization…`);
        else if (opened.error)
          say(`Could not open a browser (${opened.command}: ${opened.error}); open the URL yourself.`);
        else say(remoteHint(url));
      },
      presentDeviceCode: (prompt: DevicePrompt) => {
        say("");
        say(`To authorize Tokenkeeper, visit:  ${prompt.verificationUri}`);
        say(`and enter the code:               ${prompt.userCode}`);
        if (prompt.verificationUriComplete) say(`(or open ${prompt.verificationUriComplete})`);
        say(`The code expires in ${formatDuration(prompt.expiresInMs)}. Waiting for approval…`);
      },
    });
    const next = nextCommands(result.summary);
    if (json) {
      writeWireJson(ctx, { ok: true, ...loginJson(result.summary), next });
    } else {
      ctx.stdout.write(renderSummary(result.summary, next));
    }
    for (const warning of result.summary.warnings) say(`WARNING: ${warning}`);
    return EXIT.ok;
  } finally {
    await store.close();
  }
}

function remoteHint(url: string): string {
  const port = /redirect_uri=http%3A%2F%2F(?:127\.0\.0\.1|localhost)%3A(\d+)/.exec(url)?.[1];
  return port
    ? `The browser must reach 127.0.0.1:${port} on this machine. From another machine, forward the port first (ssh -L ${port}:127.0.0.1:${port} <this-host>), fix it with --callback-port, or use --device.`
    : "Open the URL in a browser that can reach this machine's loopback address, or use --device.";
}

/**
 * The secret of a pre-registered client: from the named environment variable, else asked for
 * on a terminal (without echo), else none (a public client).
 */
async function readClientSecret(
  ctx: CliContext,
  clientId: string,
  envName: string | undefined,
): Promise<Secret | undefined> {
  const name = envName ?? DEFAULT_SECRET_ENV;
  const value = ctx.env[name];
  if (value) return new Secret(value);
  if (envName !== undefined)
    throw new ConfigError(`the environment variable ${envName} (--client-secret-env) is empty or unset`);
  if (!ctx.interactive) return undefined;
  const typed = await promptHidden(ctx, `Client secret for ${clientId} (empty for a public client): `);
  return typed ? new Secret(typed) : undefined;
}

type RawStdin = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => void };

/** How long the secret prompt waits for the person. */
const PROMPT_TIMEOUT_MS = 5 * 60_000;

/** Reads one line from the terminal without echoing it; gives up after PROMPT_TIMEOUT_MS. */
function promptHidden(ctx: CliContext, question: string): Promise<string> {
  ctx.stderr.write(question);
  const stdin = ctx.stdin as unknown as RawStdin;
  const raw = typeof stdin.setRawMode === "function" && stdin.isTTY;
  return new Promise<string>((resolve, reject) => {
    let value = "";
    let done = false;
    const stopTimer = new AbortController();
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      stopTimer.abort();
      stdin.removeListener("data", onData);
      ctx.signal.removeEventListener("abort", onAbort);
      if (raw) stdin.setRawMode!(false);
      stdin.pause();
      ctx.stderr.write("\n");
      fn();
    };
    const onAbort = () =>
      finish(() => reject(new TokenkeeperError("cancelled", "login cancelled at the secret prompt")));
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return finish(() => resolve(value));
        if (ch === "\u0003") return onAbort(); // Ctrl-C in raw mode
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    if (raw) stdin.setRawMode!(true);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    stdin.on("data", onData);
    stdin.resume();
    ctx.clock.sleep(PROMPT_TIMEOUT_MS, stopTimer.signal).then(
      () =>
        finish(() =>
          reject(new ConfigError(`no client secret was typed within ${formatDuration(PROMPT_TIMEOUT_MS)}`)),
        ),
      () => {},
    );
  });
}

/** What to run next: check the connector, then use it from a job or an MCP client. */
export function nextCommands(summary: LoginSummary): string[] {
  const n = summary.connector;
  return [
    `tokenkeeper status ${n}`,
    `tokenkeeper ensure ${n}`,
    `tokenkeeper run --connector ${n} -- <command>`,
    `tokenkeeper proxy ${n}`,
  ];
}

/** The --json form of a login (and import) summary: snake_case keys, ISO-8601 UTC times. */
export function loginJson(s: LoginSummary): Record<string, unknown> {
  return {
    connector: s.connector,
    server: s.server,
    resource: s.resource,
    issuer: s.issuer,
    grant: s.grant,
    client_kind: s.clientKind,
    client_id: s.clientId,
    scope_requested: s.scopeRequested,
    scope_granted: s.scopeGranted,
    access_token_lifetime_seconds:
      s.accessTokenLifetimeMs === null ? null : Math.round(s.accessTokenLifetimeMs / 1000),
    access_token_expires_at: isoTime(s.accessTokenExpiresAt),
    refresh_token_issued: s.refreshTokenIssued,
    refresh_token_rotates: s.refreshTokenRotates,
    refresh_token_expires_at: isoTime(s.refreshTokenExpiresAt),
    human_needed_at: isoTime(s.humanNeededAt),
    replaced_existing: s.replacedExisting,
    warnings: s.warnings,
  };
}

/** A time for people; a server-stated one beyond what a Date holds is shown as the number it is. */
function when(ms: number): string {
  return isoTime(ms)?.replace(/\.\d{3}Z$/, "Z") ?? `epoch ms ${ms}`;
}

export function renderSummary(s: LoginSummary, next: string[]): string {
  const clientKind = {
    dynamic: "registered dynamically",
    preregistered: "pre-registered",
    metadata_document: "client ID metadata document",
  }[s.clientKind];
  const lifetime =
    s.accessTokenLifetimeMs === null
      ? "lifetime not given by the server"
      : `valid for ${formatDuration(s.accessTokenLifetimeMs)}${s.accessTokenExpiresAt !== null ? ` (until ${when(s.accessTokenExpiresAt)})` : ""}`;
  let refresh: string;
  if (s.grant === "client_credentials") refresh = "none needed: new tokens come from the client credentials";
  else if (!s.refreshTokenIssued) refresh = "NONE: a human must log in again when the access token expires";
  else {
    refresh = "issued; rotation unknown until the first refresh";
    if (s.refreshTokenExpiresAt) refresh += `; expires ${when(s.refreshTokenExpiresAt)}`;
  }
  const rows: [string, string][] = [
    ["connector", s.connector],
    ["server", s.server],
    ["issuer", s.issuer],
    ["client", `${clientKind} (${s.clientId})`],
    ["grant", s.grant],
    ["scopes", s.scopeGranted ?? s.scopeRequested ?? "(none)"],
    ["access token", lifetime],
    ["refresh token", refresh],
  ];
  if (s.humanNeededAt !== null) rows.push(["human needed", `by ${when(s.humanNeededAt)}`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    `${s.replacedExisting ? "Logged in again" : "Logged in"}: connector "${s.connector}" is ready.`,
    ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    "",
    "Next:",
    ...next.map((c) => `  ${c}`),
    "",
  ].join("\n");
}
