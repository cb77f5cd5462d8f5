/**
 * `tokenkeeper import mcp-remote URL`: an authorization mcp-remote holds is adopted without a new
 * sign-in. The files are written by mcp-remote's own code (its NodeOAuthClientProvider, in the
 * directory and under the hash its own argument parser computes), holding a real client and
 * real tokens of the oidc-provider test bed; the imported connector serves that token, refreshes
 * it, and logs in again with the same client and mcp-remote's redirect URI.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import type { TokenSet } from "../../src/core/record.js";
import { login } from "../../src/manager/login.js";
import {
  IMPORT_EXPIRY_MARGIN_MS,
  importedExpiry,
  mcpRemoteServerHash,
} from "../../src/oauth/mcp-remote-import.js";
import { MAX_ACCESS_TOKEN_LIFETIME_S } from "../../src/oauth/token-response.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { followAuthorization } from "../support/browser-agent.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { runCliInProcess } from "../support/run-cli.js";
import { type Cli, makeCli } from "./auth-cli-harness.js";

const MCP_REMOTE_DIST = join(process.cwd(), "node_modules", "mcp-remote", "dist");

interface McpRemoteModule {
  parseCommandLineArgs(
    args: string[],
    usage: string,
  ): Promise<{ serverUrlHash: string; callbackPort: number; host: string; callbackPath: string }>;
  NodeOAuthClientProvider: new (
    options: Record<string, unknown>,
  ) => {
    redirectUrl: string;
    saveClientInformation(info: Record<string, unknown>): Promise<void>;
    saveTokens(tokens: Record<string, unknown>): Promise<void>;
  };
}

/** mcp-remote's bundle: the chunk that exports its OAuth provider (its name carries a build hash). */
async function loadMcpRemote(): Promise<McpRemoteModule> {
  for (const file of await readdir(MCP_REMOTE_DIST)) {
    if (!file.endsWith(".js")) continue;
    const text = await readFile(join(MCP_REMOTE_DIST, file), "utf8");
    if (/\bNodeOAuthClientProvider,\s*\n/.test(text) && text.includes("parseCommandLineArgs,"))
      return (await import(join(MCP_REMOTE_DIST, file))) as McpRemoteModule;
  }
  throw new Error("mcp-remote's provider module was not found");
}

/**
 * An authorization laid out by hand as an mcp-remote release writes it: `<hash>_client_info.json`
 * and `<hash>_tokens.json` in its per-version directory `dir`. Returns the tokens file's path.
 */
async function writeMcpRemoteFiles(
  dir: string,
  hash: string,
  clientInfo: Record<string, unknown>,
  tokens: Record<string, unknown>,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${hash}_client_info.json`), JSON.stringify(clientInfo));
  const tokensFile = join(dir, `${hash}_tokens.json`);
  await writeFile(tokensFile, JSON.stringify(tokens));
  return tokensFile;
}

let bed: TestBed;
let mcpAuth: string;
let mcpRemote: McpRemoteModule;
let cli: Cli;
/** What mcp-remote was given: a real client and tokens the bed issued. */
let issued: { clientId: string; redirectUri: string; tokens: TokenSet };
const savedConfigDir = process.env.MCP_REMOTE_CONFIG_DIR;

before(async () => {
  bed = await startTestBed();
  mcpAuth = await mkdtemp(join(tmpdir(), "tk-mcp-auth-"));
  // mcp-remote reads its config directory from the environment each time it touches a file.
  process.env.MCP_REMOTE_CONFIG_DIR = mcpAuth;
  mcpRemote = await loadMcpRemote();
  cli = await makeCli({ MCP_REMOTE_CONFIG_DIR: mcpAuth });

  // mcp-remote's own view of this server: hash, callback host, port and path.
  const args = await mcpRemote.parseCommandLineArgs([bed.mcpUrl], "usage");
  assert.equal(args.serverUrlHash, mcpRemoteServerHash(bed.mcpUrl), "the same file-name hash");
  const provider = new mcpRemote.NodeOAuthClientProvider({
    serverUrl: bed.mcpUrl,
    serverUrlHash: args.serverUrlHash,
    callbackPort: args.callbackPort,
    host: args.host,
    callbackPath: args.callbackPath,
  });
  // The client mcp-remote would have registered, and a real sign-in with its redirect URI.
  const client = await bed.as.registerClient({
    application_type: "native",
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [provider.redirectUrl],
  });
  const signedIn = await login(
    {
      mcpUrl: bed.mcpUrl,
      name: "setup",
      clientId: client.client_id,
      callbackHost: "localhost",
      callbackPath: args.callbackPath,
      callbackPort: args.callbackPort,
    },
    {
      store: new MemoryStore(),
      clock: systemClock,
      presentUrl: async (url) => void (await followAuthorization(url)),
      presentDeviceCode: () => {},
    },
  );
  const tokens = signedIn.record.tokens!;
  issued = { clientId: client.client_id, redirectUri: provider.redirectUrl, tokens };
  await provider.saveClientInformation({
    client_id: client.client_id,
    redirect_uris: [provider.redirectUrl],
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    client_name: "MCP CLI Client",
  });
  await provider.saveTokens({
    access_token: tokens.accessToken.reveal(),
    token_type: "Bearer",
    expires_in: Math.round((tokens.expiresAt! - tokens.obtainedAt) / 1000),
    refresh_token: tokens.refreshToken!.reveal(),
    scope: tokens.scope,
  });
  bed.as.resetCounters();
});

after(async () => {
  if (savedConfigDir === undefined) delete process.env.MCP_REMOTE_CONFIG_DIR;
  else process.env.MCP_REMOTE_CONFIG_DIR = savedConfigDir;
  await cli.cleanup();
  await rm(mcpAuth, { recursive: true, force: true });
  await bed.close();
});

describe("import mcp-remote", () => {
  it("adopts the client and tokens mcp-remote wrote: no sign-in, no registration, the same token", async () => {
    const r = await cli.run(["import", "mcp-remote", bed.mcpUrl, "--name", "adopted", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json!;
    assert.equal(j.connector, "adopted");
    assert.equal(j.client_id, issued.clientId);
    assert.equal(j.refresh_token_issued, true);
    assert.match(String(j.imported_from), /mcp-remote-v1$/);
    assert.match(r.stderr, /stop using mcp-remote/);
    for (const secret of [issued.tokens.accessToken.reveal(), issued.tokens.refreshToken!.reveal()]) {
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), "no secret printed");
    }

    const store = await cli.openStore();
    const record = (await store.get("adopted"))!.record;
    await store.close();
    assert.equal(record.client.kind, "dynamic");
    assert.deepEqual(record.client.redirectUris, [issued.redirectUri]);
    // Never later than what the server stated, and a margin earlier.
    assert.ok(record.tokens!.expiresAt! <= issued.tokens.expiresAt! - IMPORT_EXPIRY_MARGIN_MS + 1000);

    const t = await cli.run(["token", "adopted"]);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.stdout.trim(), issued.tokens.accessToken.reveal(), "the adopted token, served as is");
    assert.equal(bed.as.counters.tokenRequests, 0);
    assert.equal(bed.as.counters.registrations, 0);
  });

  it("the adopted refresh token works, and logging in again keeps mcp-remote's client and redirect URI", async () => {
    const refused = issued.tokens.accessToken.reveal();
    const r = await runCliInProcess(["token", "adopted", "--rejected"], {
      env: cli.env,
      stdin: Readable.from([`${refused}\n`]),
    });
    assert.equal(r.code, 0, r.stderr);
    const fresh = r.stdout.trim();
    assert.notEqual(fresh, refused);
    assert.equal(bed.as.counters.refreshGrantsSucceeded, 1);
    assert.ok(await mcpAccepts(bed.mcpUrl, fresh));

    const again = await cli.run(["login", bed.mcpUrl, "--name", "adopted", "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json!.client_id, issued.clientId);
    assert.match(
      again.stderr,
      new RegExp(`redirect_uri=${encodeURIComponent(issued.redirectUri).replace(/[.]/g, "\\.")}`),
    );
    assert.equal(bed.as.counters.registrations, 0);
  });

  it("older releases: a per-version directory and only expires_in, counted conservatively from the file's time", async () => {
    const base = join(mcpAuth, "older");
    const tokensFile = await writeMcpRemoteFiles(
      join(base, "mcp-remote-0.1.29"),
      mcpRemoteServerHash(bed.mcpUrl),
      { client_id: issued.clientId, redirect_uris: [issued.redirectUri] },
      {
        access_token: "opaque-legacy-token",
        token_type: "bearer",
        expires_in: 600,
        refresh_token: "legacy-refresh",
      },
    );
    const writtenAt = Math.floor(Date.now() / 1000) * 1000 - 100_000;
    await utimes(tokensFile, writtenAt / 1000, writtenAt / 1000);
    const r = await cli.run(["import", "mcp-remote", bed.mcpUrl, "--name", "legacy", "--config-dir", base]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mcp-remote-0\.1\.29/);
    const store = await cli.openStore();
    const record = (await store.get("legacy"))!.record;
    await store.close();
    assert.equal(record.tokens!.expiresAt, writtenAt + 600_000 - IMPORT_EXPIRY_MARGIN_MS);
    assert.equal(record.tokens!.obtainedAt, writtenAt);
    assert.equal(record.client.tokenEndpointAuthMethod, "none");
  });

  it("--hash names files written under options that change mcp-remote's hash", async () => {
    const base = join(mcpAuth, "hashed");
    // mcp-remote run with --header: the hash covers the URL and the headers.
    const hash = mcpRemoteServerHash(bed.mcpUrl, [JSON.stringify({ "X-Team": "a" })]);
    await writeMcpRemoteFiles(
      join(base, "mcp-remote-v1"),
      hash,
      { client_id: issued.clientId, redirect_uris: [issued.redirectUri] },
      { access_token: "opaque-hashed-token", token_type: "Bearer", expires_in: 600 },
    );
    const importHashed = ["import", "mcp-remote", bed.mcpUrl, "--name", "hashed", "--config-dir", base];
    const missing = await cli.run(importHashed);
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /1 other authorization there/);
    const r = await cli.run([...importHashed, "--hash", hash.toUpperCase()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /NO REFRESH TOKEN/);
    assert.equal((await cli.run(["import", "mcp-remote", bed.mcpUrl, "--hash", "xyz"])).code, 64);
  });

  it("refuses files that do not validate, and stores nothing", async () => {
    const base = join(mcpAuth, "broken");
    await writeMcpRemoteFiles(
      join(base, "mcp-remote-v1"),
      mcpRemoteServerHash(bed.mcpUrl),
      { client_id: "x", redirect_uris: [] },
      { access_token: "mac-secret-value", token_type: "mac", expires_at: 1_800_000 },
    );
    const r = await cli.run(["import", "mcp-remote", bed.mcpUrl, "--name", "bad", "--config-dir", base]);
    assert.equal(r.code, 78, r.stderr);
    assert.ok(!r.stderr.includes("mac-secret-value"));
    const store = await cli.openStore();
    assert.equal(await store.get("bad"), null);
    await store.close();
  });

  it("holds imported tokens to the checks a server's answer passes: bad characters refused, lifetimes bounded", async () => {
    const base = join(mcpAuth, "hostile");
    await writeMcpRemoteFiles(
      join(base, "mcp-remote-v1"),
      mcpRemoteServerHash(bed.mcpUrl),
      { client_id: "x", redirect_uris: [] },
      { access_token: "first-line-of-it\r\nX-Injected: 1", token_type: "Bearer", expires_in: 3600 },
    );
    const r = await cli.run(["import", "mcp-remote", bed.mcpUrl, "--name", "crlf", "--config-dir", base]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /b64token/);
    assert.ok(!r.stderr.includes("first-line-of-it"));
    const store = await cli.openStore();
    assert.equal(await store.get("crlf"), null);
    await store.close();

    // A far-future expires_at (valid epoch ms) is bounded like a server's expires_in.
    const writtenAt = Date.UTC(2026, 0, 1);
    const bounded = importedExpiry({ access_token: "opaque", expires_at: 1e17 }, writtenAt)!;
    assert.ok(bounded <= writtenAt + MAX_ACCESS_TOKEN_LIFETIME_S * 1000, String(bounded));
    assert.doesNotThrow(() => new Date(bounded).toISOString());
  });

  it("says where it looked when mcp-remote holds nothing for the URL", async () => {
    const r = await cli.run(["import", "mcp-remote", "https://nowhere.example/mcp", "--json"]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /holds no client and tokens for https:\/\/nowhere\.example\/mcp/);
    const usage = await cli.run(["import", "claude-desktop", bed.mcpUrl]);
    assert.equal(usage.code, 64);
  });
});
