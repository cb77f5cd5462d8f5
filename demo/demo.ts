/**
 * `npm run demo`: Tokenkeeper end to end on this machine, with no account anywhere.
 *
 * 1. Starts the repository's test bed on loopback: a real OAuth authorization server
 *    (oidc-provider: dynamic registration, PKCE, resource indicators, refresh tokens rotated on
 *    every use) whose access tokens live a few seconds, and a real MCP server that requires them.
 * 2. Logs in once, as a person would, through the real login code (discovery, registration,
 *    PKCE, loopback callback); the "person" here is a script that follows the redirects.
 * 3. Runs an unattended job for about a minute: an MCP SDK client calls a tool every few
 *    seconds through Tokenkeeper, which refreshes ahead of expiry; each refresh and rotation is
 *    printed as it happens.
 * 4. Revokes the grant at the server, and shows what the job gets: the structured skip record
 *    with reason, action and exit code, within a second, with no retry storm.
 *
 * Options (environment): DEMO_SECONDS (default 60), DEMO_TOKEN_TTL (seconds, default 6).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { systemClock } from "../src/core/clock.js";
import { formatDuration } from "../src/core/duration.js";
import { ReauthRequiredError } from "../src/core/errors.js";
import type { TokenkeeperEvent } from "../src/manager/events.js";
import { login } from "../src/manager/login.js";
import { TokenManager } from "../src/manager/token-manager.js";
import { FileStore } from "../src/store/file-store.js";
import { preflight } from "../src/surfaces/preflight.js";
import { tokenkeeperTransportOptions } from "../src/surfaces/sdk-provider.js";
import { describeRecord, skippedRecord } from "../src/surfaces/skip-record.js";
import { startTestBed } from "../test/bed/index.js";

const seconds = Number(process.env.DEMO_SECONDS ?? 60);
const ttl = Number(process.env.DEMO_TOKEN_TTL ?? 6);
const started = Date.now();
const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`;
const say = (line: string) => console.log(`${stamp()} ${line}`);

/** The "person" at the browser: follows the authorization server's redirects to the loopback callback. */
async function personAtBrowser(url: string): Promise<void> {
  let location = url;
  for (let hop = 0; hop < 12; hop++) {
    const res = await fetch(location, { redirect: "manual" });
    const next = res.headers.get("location");
    await res.body?.cancel();
    if (!next) return;
    location = new URL(next, location).href;
  }
}

async function main(): Promise<number> {
  const home = await mkdtemp(join(tmpdir(), "tokenkeeper-demo-"));
  const bed = await startTestBed({ accessTokenTtl: ttl });
  const store = new FileStore({ dir: home });
  let exitCode = 0;
  try {
    say(`test bed up: authorization server ${bed.issuer}, MCP server ${bed.mcpUrl}`);
    say(`access tokens live ${ttl}s; refresh tokens rotate on every use; store: ${store.location}`);

    // -- 1. the one human step -------------------------------------------------------------
    const { summary } = await login(
      { mcpUrl: bed.mcpUrl, name: "demo", flow: "browser" },
      {
        store,
        clock: systemClock,
        presentUrl: (url) => {
          say("login: opening the authorization URL (a script plays the person who clicks Authorize)");
          void personAtBrowser(url);
        },
        presentDeviceCode: () => {},
        note: (line) => say(`login: ${line}`),
      },
    );
    say(
      `logged in: connector "${summary.connector}", client ${summary.clientKind}, scopes "${summary.scopeGranted}", ` +
        `access token ${formatDuration(summary.accessTokenLifetimeMs ?? 0)}, refresh token ${summary.refreshTokenIssued ? "issued" : "NOT issued"}`,
    );

    // -- 2. the unattended job ---------------------------------------------------------------
    const manager = new TokenManager({ store, onEvent: (e) => report(e) });
    // What `tokenkeeper ensure --min-ttl …` does before a scheduled job: is the refresh path alive?
    const ready = await preflight(manager, "demo", { minTtlMs: 2_000 });
    say(`preflight (ensure): ${describeRecord(ready)}`);
    // An MCP SDK client whose OAuthClientProvider is Tokenkeeper: it never opens a browser.
    const client = new Client({ name: "tokenkeeper-demo-job", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(bed.mcpUrl), tokenkeeperTransportOptions(manager, "demo")),
    );
    say(`unattended job: calling the "echo" tool every 2s for ${seconds}s…`);
    let calls = 0;
    let failures = 0;
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      calls++;
      try {
        const result = await client.callTool({ name: "echo", arguments: { text: `call ${calls}` } });
        const text = (result.content as { type: string; text?: string }[])[0]?.text;
        const left = manager.cached("demo")?.record.tokens?.expiresAt;
        say(
          `call #${calls} → ${JSON.stringify(text)} (token valid ${formatDuration((left ?? Date.now()) - Date.now())} more)`,
        );
      } catch (error) {
        failures++;
        say(`call #${calls} FAILED: ${error instanceof Error ? error.message : String(error)}`);
      }
      await new Promise((r) => setTimeout(r, 2_000));
    }
    const record = (await store.get("demo"))!.record;
    say(
      `job done: ${calls} calls, ${failures} failed; ${record.state.refreshCount} refreshes, ${record.state.rotationCount} rotations, ` +
        `server saw ${bed.as.counters.grants.refresh_token} refresh grants and ${bed.as.counters.rejectedRefreshTokens} rejected refresh tokens`,
    );

    // -- 3. when a human is truly needed ---------------------------------------------------------
    say("revoking the grant at the authorization server (as an admin or a password reset would)…");
    await bed.as.revokeAllGrants();
    const before = bed.as.counters.tokenRequests;
    const t0 = Date.now();
    // The access token already issued is a self-contained JWT: the MCP server keeps accepting it
    // until it expires. Tokenkeeper learns of the revocation at its next refresh (ahead of
    // expiry), and from then on the job gets a typed, structured answer instead of "tool failed".
    let skipShown = false;
    for (let attempt = 1; attempt <= ttl * 2 + 4 && !skipShown; attempt++) {
      try {
        await client.callTool({ name: "echo", arguments: { text: `after revocation ${attempt}` } });
        say(`call after revocation #${attempt} still served (the issued token has not expired yet)`);
        await new Promise((r) => setTimeout(r, 1_000));
      } catch (error) {
        const cause = findReauth(error);
        const skip = skippedRecord("demo", cause ?? error, { now: Date.now() });
        say(`the job is told: ${describeRecord(skip)}`);
        say(
          `(${Date.now() - t0} ms after the revocation; ${bed.as.counters.tokenRequests - before} token request(s) in all — no retry storm)`,
        );
        console.log(JSON.stringify(skip, null, 2));
        if (!cause) exitCode = 1;
        skipShown = true;
      }
    }
    // And the preflight of the next scheduled run: it is not started at all (exit 77).
    const next = await preflight(manager, "demo", { minTtlMs: 2_000 });
    say(`next run's preflight: status ${next.status}, exit code ${next.exit_code} — the job would not start`);
    if (!skipShown) {
      say("unexpected: the revocation was never reported");
      exitCode = 1;
    }
    await client.close();
    await manager.close();
    if (failures > 0) exitCode = 1;
  } finally {
    await store.close();
    await bed.close();
    await rm(home, { recursive: true, force: true });
  }
  say(
    exitCode === 0
      ? "demo finished: every call succeeded until the revocation, which was reported loudly."
      : "demo finished with problems.",
  );
  return exitCode;
}

function report(e: TokenkeeperEvent): void {
  switch (e.type) {
    case "refreshed":
      say(
        `  ↻ refreshed ahead of expiry in ${e.durationMs} ms (refresh #${e.refreshCount}); new token valid ${formatDuration((e.expiresAt ?? e.at) - e.at)}`,
      );
      break;
    case "rotated":
      say(`  ⟳ refresh token rotated (rotation #${e.rotationCount}) — saved durably before use`);
      break;
    case "reauth_required":
      say(`  ✖ reauth_required: ${e.reason} (server said ${e.serverError ?? "nothing"})`);
      break;
    case "retrying":
      say(`  … retrying in ${e.delayMs} ms: ${e.error.message}`);
      break;
    default:
      break;
  }
}

/** The SDK may wrap our error; find the typed one. */
function findReauth(error: unknown): ReauthRequiredError | undefined {
  for (let e: unknown = error, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    if (e instanceof ReauthRequiredError) return e;
  }
  return undefined;
}

process.exitCode = await main();
