/**
 * A scope chosen by a hostile server (WWW-Authenticate at discovery, protected-resource metadata,
 * a 403 insufficient_scope) must never run anything when a person pastes the re-authorization
 * command, and a valid scope must reach every message intact.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { exitCodeFor, ProtocolError, ReauthRequiredError } from "../../src/core/errors.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { createAuthFetch } from "../../src/surfaces/auth-fetch.js";
import { skippedRecord } from "../../src/surfaces/skip-record.js";
import { type Hostile, startHostile } from "./harness.js";

const open: Hostile[] = [];
after(() => Promise.all(open.map((h) => h.close())));

async function hostile(options: Parameters<typeof startHostile>[0] = {}): Promise<Hostile> {
  const h = await startHostile(options);
  open.push(h);
  return h;
}

/** Runs an action's command line in /bin/sh with `tokenkeeper` a function printing its arguments. */
function pasted(action: string, cwd: string): string[] {
  const command = /`(tokenkeeper .*)`$/.exec(action)?.[1];
  assert.ok(command, action);
  const out = execFileSync(
    "/bin/sh",
    ["-c", `tokenkeeper() { for a in "$@"; do printf '%s\\0' "$a"; done; }; ${command}`],
    { encoding: "utf8", cwd },
  );
  return out.split("\0").slice(0, -1);
}

describe("a hostile scope at login is refused with a protocol error naming its source", () => {
  it("from the WWW-Authenticate challenge", async () => {
    let marker = "";
    const h = await hostile({
      challenge: (origin) =>
        `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp", scope="tools $(touch ${marker}) \\"x\\""`,
    });
    marker = join(h.home, "pwned");
    const r = await h.cliLogin("s");
    assert.equal(r.code, 76, r.stderr);
    assert.match(r.stderr, /WWW-Authenticate challenge of http:\/\/127\.0\.0\.1:\d+\/mcp/);
    assert.deepEqual(await h.store.list(), []);
    assert.equal(h.fake.counts.registrations, 0, "no client registered");
    assert.equal(existsSync(marker), false);
  });

  it("from scopes_supported in the protected resource metadata", async () => {
    const h = await hostile({
      challenge: (origin) => `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`,
      prm: (d) => ({ ...d, scopes_supported: ["tools", "x\u001b]0;title\u0007"] }),
    });
    const r = await h.cliLogin("p");
    assert.equal(r.code, 76, r.stderr);
    assert.match(r.stderr, /scopes_supported in the protected resource metadata/);
    assert.deepEqual(await h.store.list(), []);
  });

  it("from the person's own --scope: a configuration error (78)", async () => {
    const h = await hostile();
    const r = await h.cliLogin("u", "--scope", 'tools "x"');
    assert.equal(r.code, 78, r.stderr);
    assert.equal(h.fake.counts.registrations, 0);
  });
});

describe("a 403 insufficient_scope from the MCP server", () => {
  async function stepUp(scope: string) {
    const h = await hostile();
    await h.loginDirect("m");
    h.on.mcp = () => ({
      status: 403,
      headers: {
        "www-authenticate": `Bearer error="insufficient_scope", scope="${scope}", error_description="needs ${scope}"`,
      },
      json: {},
    });
    const manager = new TokenManager({ store: h.store, clock: systemClock });
    const fetch = createAuthFetch(manager, "m");
    const error = await fetch(h.fake.mcpUrl, { method: "POST", body: "{}" }).then(
      () => assert.fail("a 403 insufficient_scope must throw"),
      (e: unknown) => e,
    );
    await manager.close();
    return { h, error };
  }

  it("with shell syntax (valid scope-token characters): accepted, and pasting the command runs nothing", async () => {
    const scope = "tools $(touch pwned) `touch pwned`;touch pwned|x it's";
    const { h, error } = await stepUp(scope);
    assert.ok(error instanceof ReauthRequiredError, String(error));
    assert.equal(exitCodeFor(error), 77);
    const args = pasted(error.action, h.home);
    assert.deepEqual(args.slice(-2), ["--scope", scope]);
    assert.equal(existsSync(join(h.home, "pwned")), false, "the pasted command ran something");
  });

  it("with characters RFC 6749 §3.3 excludes: protocol error (76) naming the challenge", async () => {
    for (const scope of ['tools \\"x\\"', "a\\\\b"]) {
      const { h, error } = await stepUp(scope);
      assert.ok(error instanceof ProtocolError, `${scope}: ${String(error)}`);
      assert.equal(exitCodeFor(error), 76);
      assert.match(
        error.message,
        /insufficient_scope challenge \(WWW-Authenticate\) of http:\/\/127\.0\.0\.1:\d+\/mcp/,
      );
      assert.equal((await h.store.get("m"))!.record.state.health, "ok", "the connector keeps working");
    }
  });

  it("with mcp:basic mcp:write: the scope reaches the message, the record and the command intact", async () => {
    const { h, error } = await stepUp("mcp:basic mcp:write");
    assert.ok(error instanceof ReauthRequiredError, String(error));
    assert.equal(error.fields.requiredScope, "mcp:basic mcp:write");
    assert.match(error.message, /needs mcp:basic mcp:write/);
    assert.doesNotMatch(error.message, /redacted/);
    const record = skippedRecord("m", error, { now: Date.now() });
    assert.match(record.detail, /mcp:basic mcp:write/);
    assert.deepEqual(pasted(record.action!, h.home), [
      "login",
      h.fake.mcpUrl,
      "--name",
      "m",
      "--scope",
      "tools mcp:basic mcp:write",
    ]);
  });
});
