/**
 * A hostile or broken authorization server at the token endpoint, at login and at refresh:
 * - credentials it quotes back never reach any output, record, event, notification or webhook;
 * - a complete answer that is not a valid token response is a protocol error (76), and at
 *   refresh the refresh token that got it is never sent again, by this process or any other;
 * - absurd lifetimes are bounded, and `status` works whatever the store holds.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { ProtocolError, ReauthRequiredError, StoreUnavailableError } from "../../src/core/errors.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { login } from "../../src/manager/login.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import type { StubResponse } from "../oauth/stub-servers.js";
import { followAuthorization } from "../support/browser-agent.js";
import { type Hostile, startHostile } from "./harness.js";

const open: Hostile[] = [];
after(() => Promise.all(open.map((h) => h.close())));
async function hostile(): Promise<Hostile> {
  const h = await startHostile();
  open.push(h);
  return h;
}

const newRefresh = "rt-new-0123456789abcdefghij";

/** A complete, well-formed token response except for what `bend` changes. */
function tokens(bend: Record<string, unknown>): StubResponse {
  return {
    json: {
      access_token: "at-new-0123456789abcdefghij",
      token_type: "Bearer",
      expires_in: 600,
      refresh_token: newRefresh,
      scope: "tools",
      ...bend,
    },
  };
}

const INVALID: { name: string; answer: (origin: string) => StubResponse; why: RegExp }[] = [
  {
    name: "a 200 without access_token",
    answer: () => tokens({ access_token: undefined }),
    why: /access_token is missing/,
  },
  { name: "token_type missing", answer: () => tokens({ token_type: undefined }), why: /token_type/ },
  { name: "token_type mac", answer: () => tokens({ token_type: "mac" }), why: /"mac" is not Bearer/ },
  { name: "token_type DPoP", answer: () => tokens({ token_type: "DPoP" }), why: /DPoP/ },
  { name: "a negative expires_in", answer: () => tokens({ expires_in: -60 }), why: /expires_in/ },
  {
    name: "a 307 redirect",
    answer: (origin) => ({ status: 307, headers: { location: `${origin}/elsewhere/token` } }),
    why: /307 redirect/,
  },
  {
    name: "an access token with CR/LF",
    answer: () => tokens({ access_token: "at-injected\r\nX-Injected: 1" }),
    why: /b64token/,
  },
  {
    name: "a scope outside RFC 6749 §3.3",
    answer: () => tokens({ scope: 'tools "$(id)"' }),
    why: /scope is not a valid OAuth scope/,
  },
];

describe("invalid token responses at login: protocol error (76), nothing stored", () => {
  for (const c of INVALID) {
    it(c.name, async () => {
      const h = await hostile();
      h.on.code = (_p, origin) => c.answer(origin);
      const r = await h.cliLogin("bad");
      assert.equal(r.code, 76, r.stderr);
      assert.match(r.stderr, c.why);
      assert.deepEqual(await h.store.list(), [], "nothing stored");
      assert.equal(h.fake.tokenRequestsOf("authorization_code").length, 1, "the code is sent once");
      await h.assertNoSecrets();
    });
  }
});

describe("invalid token responses at refresh: 76 once, the refresh token never sent again", () => {
  for (const c of INVALID) {
    it(c.name, async () => {
      const h = await hostile();
      await h.loginDirect("c");
      h.on.refresh = (_p, origin) => c.answer(origin);

      // ensure proves the refresh path by refreshing now.
      const first = await h.cli(["ensure", "c", "--json", "--timeout", "20s"]);
      assert.equal(first.code, 76, first.stderr);
      const record = first.lines[0]!;
      assert.equal(record.status, "skipped");
      assert.equal(record.code, "protocol_error");
      assert.equal(record.reason, "invalid_token_response");
      assert.match(String(record.detail), c.why);
      assert.match(String(record.action), /tokenkeeper login '.*' --name 'c'/);

      // Another process, later: it must not spend the same refresh token again.
      const second = await h.cli(["ensure", "c", "--json", "--timeout", "20s"]);
      assert.equal(second.code, 77, second.stderr);
      assert.equal(second.lines[0]!.reason, "invalid_token_response");
      const token = await h.cli(["token", "c"]);
      assert.equal(token.code, 77);
      assert.equal(token.stdout, "", "token prints nothing");
      assert.equal(h.fake.tokenRequestsOf("refresh_token").length, 1, "exactly one refresh request");

      const status = await h.cli(["status", "c", "--json"]);
      assert.equal(status.code, 0);
      const s = (status.lines[0]!.connectors as Record<string, unknown>[])[0]!;
      assert.equal(s.health, "reauth_required");
      assert.equal((s.reauth as { reason: string }).reason, "invalid_token_response");
      // A human hears about it once, by every channel.
      assert.equal((await h.notifications()).length, 1);
      assert.equal(h.webhookBodies.length, 1);
      await h.assertNoSecrets();
    });
  }
});

describe("a server that quotes the credentials it was sent", () => {
  it("at refresh, a transient error quoting the still-valid refresh token: degraded, then it works", async () => {
    const h = await hostile();
    await h.loginDirect("t");
    let calls = 0;
    h.on.refresh = (p) => {
      calls++;
      const rt = p.get("refresh_token")!;
      return calls % 2
        ? {
            status: 400,
            json: {
              error: "temporarily_unavailable",
              error_description: `refresh_token=${rt} (${encodeURIComponent(rt)}) is\r\nbusy {"forged":"line"}`,
            },
          }
        : { status: 503, json: { error: rt } };
    };
    const ensure = await h.cli(["ensure", "t", "--json", "--timeout", "1s"]);
    assert.equal(ensure.code, 0, ensure.stderr);
    assert.equal(ensure.lines[0]!.status, "degraded");
    const keepalive = await h.cli(["keepalive", "--once", "--idle", "0s", "--json", "--timeout", "1s"]);
    assert.notEqual(keepalive.code, 1, keepalive.stderr);
    assert.ok(calls >= 2, "the server was asked");
    const status = await h.cli(["status", "t", "--json"]);
    const s = (status.lines[0]!.connectors as Record<string, unknown>[])[0]!;
    assert.ok(s.last_error, "the failure is on record");
    assert.ok((await h.events()).some((e) => e.type === "retrying" || e.type === "refresh_failed"));
    await h.assertNoSecrets();

    // The refresh token was valid all along: once the server recovers, it refreshes.
    h.on.refresh = undefined;
    const ok = await h.cli(["ensure", "t", "--json"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.lines[0]!.status, "ready");
    await h.assertNoSecrets();
  });

  it("at refresh, invalid_grant quoting the refresh token: 77, notified, nothing leaks", async () => {
    const h = await hostile();
    await h.loginDirect("g");
    h.on.refresh = (p) => ({
      status: 400,
      json: {
        error: "invalid_grant",
        error_description: `grant revoked for ${p.get("refresh_token")}`,
        error_uri: `https://as.example/why?rt=${p.get("refresh_token")}`,
      },
    });
    const ensure = await h.cli(["ensure", "g", "--json", "--timeout", "5s"]);
    assert.equal(ensure.code, 77, ensure.stderr);
    assert.match(String(ensure.lines[0]!.detail), /grant revoked for \[redacted\]/);
    const token = await h.cli(["token", "g"]);
    assert.equal(token.code, 77);
    assert.equal((await h.notifications()).length, 1);
    assert.equal(h.webhookBodies.length, 1);
    await h.assertNoSecrets();
  });

  it("at refresh, an error code that is itself the refresh token", async () => {
    const h = await hostile();
    await h.loginDirect("e");
    h.on.refresh = (p) => ({ status: 400, json: { error: p.get("refresh_token") } });
    const ensure = await h.cli(["ensure", "e", "--json", "--timeout", "5s"]);
    assert.equal(ensure.code, 77, ensure.stderr);
    await h.assertNoSecrets();
  });

  it("at revocation (logout --revoke), a refusal quoting the still-live refresh token", async () => {
    const h = await hostile();
    await h.loginDirect("r");
    h.on.revoke = (p) => ({
      status: 400,
      json: { error: `nope_${p.get("token")}`, error_description: `cannot revoke ${p.get("token")}` },
    });
    const r = await h.cli(["logout", "r", "--revoke"]);
    assert.ok(h.fake.counts.revocations >= 1, "the server was asked");
    assert.match(`${r.stdout}${r.stderr}`, /cannot revoke \[redacted\]/);
    await h.assertNoSecrets();
  });

  it("at login, an error quoting the code and the PKCE verifier", async () => {
    const h = await hostile();
    h.on.code = (p) => ({
      status: 400,
      json: {
        error: "invalid_grant",
        error_description: `code ${p.get("code")} does not match verifier ${p.get("code_verifier")}\u001b[2K`,
      },
    });
    const r = await h.cliLogin("l");
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /invalid_grant/);
    assert.deepEqual(await h.store.list(), []);
    await h.assertNoSecrets();
  });
});

describe("lifetimes are bounded; status works whatever is stored", () => {
  it("expires_in 1e13 at login and at refresh: clamped, status keeps working", async () => {
    const h = await hostile();
    h.on.code = () => tokens({ expires_in: 1e13 });
    const login = await h.cliLogin("long");
    assert.equal(login.code, 0, login.stderr);
    const yearMs = 367 * 86_400_000;
    const expiry = async () => {
      const status = await h.cli(["status", "long", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      const s = (status.lines[0]!.connectors as Record<string, unknown>[])[0]!;
      return Date.parse(String(s.access_token_expires_at));
    };
    assert.ok((await expiry()) < Date.now() + yearMs);
    h.on.refresh = () => tokens({ expires_in: 1e13 });
    const ensure = await h.cli(["ensure", "long", "--json"]);
    assert.equal(ensure.code, 0, ensure.stderr);
    assert.ok((await expiry()) < Date.now() + yearMs);
    assert.equal((await h.cli(["status"])).code, 0);
  });

  it("status (human and --json) survives times no date can hold, left by an older version", async () => {
    const h = await hostile();
    await h.loginDirect("odd");
    await h.patch("odd", (r) => ({
      ...r,
      tokens: { ...r.tokens!, expiresAt: 1e13 * 1000, refreshTokenExpiresAt: -1e17 },
      state: { ...r.state, lastError: { code: "transient", at: 9e15 }, lastRefreshAt: 1e300 },
    }));
    const human = await h.cli(["status"]);
    assert.equal(human.code, 0, human.stderr);
    const json = await h.cli(["status", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const s = (json.lines[0]!.connectors as Record<string, unknown>[])[0]!;
    assert.equal(s.access_token_expires_at, null);
  });

  it("token refuses to print a stored access token that would inject a header", async () => {
    const h = await hostile();
    await h.loginDirect("crlf");
    const { Secret } = await import("../../src/core/secret.js");
    await h.patch("crlf", (r) => ({
      ...r,
      tokens: { ...r.tokens!, accessToken: new Secret("at-ok\r\nX-Injected: 1") },
    }));
    const token = await h.cli(["token", "crlf"]);
    assert.equal(token.code, 76, token.stderr);
    assert.equal(token.stdout, "");
    const headers = await h.cli(["headers", "crlf"]);
    assert.equal(headers.code, 76, headers.stderr);
    assert.equal(headers.stdout, "");
  });
});

/** A store whose writes fail while `refuse` is set (an outage between read and write). */
class RefusingStore extends MemoryStore {
  refuse = false;
  override async put(name: string, record: ConnectorRecord, expectedVersion: number | null): Promise<number> {
    if (this.refuse) throw new StoreUnavailableError("the store is down");
    return super.put(name, record, expectedVersion);
  }
}

describe("the verdict on an invalid answer holds in this process even when the store cannot record it", () => {
  it("never sends the refresh token again, and records the verdict once the store is back", async () => {
    const h = await hostile();
    const store = new RefusingStore();
    await login(
      { mcpUrl: h.fake.mcpUrl, name: "v", flow: "browser" },
      {
        store,
        clock: systemClock,
        presentUrl: async (url) => void (await followAuthorization(url)),
        presentDeviceCode: () => {},
      },
    );
    h.on.refresh = () => tokens({ token_type: "DPoP" });
    const manager = new TokenManager({ store, clock: systemClock, retry: { deadlineMs: 5_000 } });
    store.refuse = true;
    for (let i = 0; i < 2; i++) {
      const e = await manager.refreshNow("v").then(
        () => assert.fail("an invalid answer must fail"),
        (error: unknown) => error,
      );
      assert.ok(e instanceof ProtocolError, String(e));
    }
    assert.equal(h.fake.tokenRequestsOf("refresh_token").length, 1, "sent once while the store was down");
    store.refuse = false;
    await manager.refreshNow("v").catch(() => {});
    assert.equal((await store.get("v"))!.record.state.reauth?.reason, "invalid_token_response");
    const later = await manager.getAccessToken("v").catch((error: unknown) => error);
    assert.ok(later instanceof ReauthRequiredError, String(later));
    assert.equal(h.fake.tokenRequestsOf("refresh_token").length, 1, "and never after");
    await manager.close();
  });
});
