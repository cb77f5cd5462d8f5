/**
 * When a human is needed: the grant is revoked mid-session, or no connector exists yet. The
 * proxy must answer every request promptly with what happened and the command to run, emit the
 * skip record, notify, never open a browser, stay up, and recover by itself after a login.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { connectTestBed } from "../support/connect.js";
import { type Home, homeWithConnector, spawnRaw, startProxy, textOf } from "./proxy-harness.js";

const REAUTH = -32030;
const CONFIG = -32034;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("tokenkeeper proxy when the grant is revoked mid-session", () => {
  let bed: TestBed;
  let home: Home;
  before(async () => {
    // Short access tokens: JWTs stay valid until they expire, so the revocation shows at the next refresh.
    bed = await startTestBed({ accessTokenTtl: 4 });
  });
  after(async () => {
    await home?.cleanup();
    await bed.close();
  });

  it("answers pending and new calls with the reason and the fix, emits the skip record, notifies, and recovers after a login", async () => {
    home = await homeWithConnector(bed, "short");
    const notified = join(home.dir, "notified.json");
    const browserMarker = join(home.dir, "browser-opened");
    const stored = (await home.store.get("short"))!;
    await home.store.put(
      "short",
      { ...stored.record, settings: { ...stored.record.settings, notifyCommand: `cat > '${notified}'` } },
      stored.version,
    );
    const eventsFile = join(home.dir, "events.jsonl");
    const proxy = await startProxy(home, "short", {
      // --interactive without a terminal must not open a browser either.
      args: ["--interactive", "--events", eventsFile],
      env: { BROWSER: `touch ${browserMarker}` },
    });
    try {
      const { client } = proxy;
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "before" } })), "before");
      const pending = client.callTool({ name: "slow", arguments: { steps: 200, delayMs: 100 } }, undefined, {
        timeout: 60_000,
      });
      let pendingError: { at: number; error: unknown } | undefined;
      pending.catch((error) => {
        pendingError = { at: Date.now(), error };
      });

      const revokedAt = Date.now();
      await bed.as.revokeAllGrants();
      let firstError: { at: number; error: unknown } | undefined;
      while (!firstError && Date.now() - revokedAt < 15_000) {
        try {
          await client.callTool({ name: "echo", arguments: { text: "during" } });
        } catch (error) {
          firstError = { at: Date.now(), error };
        }
        await sleep(250);
      }
      assert.ok(firstError, "the revocation was never reported");
      // Bounded: the old JWT lives at most its 4 s, then the refresh fails.
      assert.ok(firstError.at - revokedAt < 4_000 + 2_000, `took ${firstError.at - revokedAt} ms`);
      const e = firstError.error;
      assert.ok(e instanceof McpError && e.code === REAUTH, String(e));
      assert.match(e.message, /needs a human to re-authorize: invalid_grant/);
      assert.match(e.message, /tokenkeeper login .* --name 'short'/);
      const data = e.data as {
        status: string;
        reason: string;
        action: string;
        connector: string;
        exit_code: number;
      };
      assert.equal(data.status, "skipped");
      assert.equal(data.connector, "short");
      assert.equal(data.reason, "invalid_grant");
      assert.equal(data.exit_code, 77);
      assert.match(data.action, /tokenkeeper login/);

      // The call that was in flight is answered too, within 2 s.
      for (let i = 0; i < 40 && !pendingError; i++) await sleep(50);
      assert.ok(pendingError, "the pending call was never answered");
      assert.ok(pendingError.at - firstError.at < 2_000);
      assert.ok(pendingError.error instanceof McpError && pendingError.error.code === REAUTH);

      // New calls: answered at once, every time; the process is alive and responsive.
      for (let i = 0; i < 5; i++) {
        const started = Date.now();
        await assert.rejects(
          client.callTool({ name: "echo", arguments: { text: "after" } }),
          (x: unknown) => x instanceof McpError && x.code === REAUTH,
        );
        assert.ok(Date.now() - started < 2_000);
      }
      await assert.rejects(client.listTools(), (x: unknown) => x instanceof McpError && x.code === REAUTH);

      // The skip record on stderr, as one JSON line.
      const stderr = await proxy.waitForStderr(/"event":"proxy_skip"/);
      const line = stderr.split("\n").find((l) => l.includes('"event":"proxy_skip"'))!;
      const record = JSON.parse(line);
      assert.equal(record.status, "skipped");
      assert.equal(record.reason, "invalid_grant");
      assert.match(record.action, /tokenkeeper login/);
      assert.match(stderr, /--interactive needs a terminal/);

      // The configured notification fired, once, with the skip record.
      for (let i = 0; i < 40 && !existsSync(notified); i++) await sleep(50);
      const notification = JSON.parse(await readFile(notified, "utf8"));
      assert.equal(notification.event, "reauth_required");
      assert.equal(notification.connector, "short");
      assert.equal(existsSync(browserMarker), false, "a browser was opened");

      // The events log has the manager's transition and the proxy's skip record.
      const events = (await readFile(eventsFile, "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      assert.ok(events.some((e) => e.type === "reauth_required" && e.connector === "short"));
      assert.ok(
        events.some((e) => e.type === "skip_record" && e.phase === "proxy" && e.reason === "invalid_grant"),
      );

      // A human logs in again: the proxy notices by itself and the same client works again.
      await connectTestBed(bed, home.store, "short");
      await sleep(1_100);
      assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "again" } })), "again");
      assert.match(proxy.stderr(), /authorized again; reconnecting/);
    } finally {
      await proxy.close();
    }
  });
});

describe("tokenkeeper proxy without a connector", () => {
  let bed: TestBed;
  let home: Home;
  before(async () => {
    bed = await startTestBed();
    home = await homeWithConnector(bed, "other");
  });
  after(async () => {
    await home.cleanup();
    await bed.close();
  });

  it("answers with the login command for an unknown name, and starts working once it exists", async () => {
    const raw = spawnRaw(home, "later");
    try {
      const answer = await raw.initialize();
      assert.equal(answer.error?.code, CONFIG);
      assert.match(
        answer.error!.message,
        /no connector named "later".*tokenkeeper login <mcp-server-url> --name later/,
      );
      assert.equal((answer.error!.data as { exit_code: number }).exit_code, 78);
      assert.match(raw.stderr(), /"event":"proxy_skip"/);

      await connectTestBed(bed, home.store, "later");
      await sleep(1_100);
      const ok = await raw.initialize();
      assert.equal((ok.result as { serverInfo: { name: string } }).serverInfo.name, "tokenkeeper-test-bed");
      const echo = await raw.request("tools/call", { name: "echo", arguments: { text: "now" } });
      assert.equal(textOf(echo.result), "now");
    } finally {
      raw.child.stdin!.end();
      await raw.exited;
    }
  });

  it("answers with `tokenkeeper login URL` for a URL no connector is logged in to", async () => {
    const raw = spawnRaw(home, "http://127.0.0.1:9/mcp");
    try {
      const answer = await raw.initialize();
      assert.equal(answer.error?.code, REAUTH);
      assert.match(answer.error!.message, /run `tokenkeeper login http:\/\/127\.0\.0\.1:9\/mcp`/);
    } finally {
      raw.child.stdin!.end();
      const exit = await raw.exited;
      assert.equal(exit.code, 77);
    }
  });
});
