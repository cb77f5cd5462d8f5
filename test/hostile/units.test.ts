/**
 * The pure defences against a hostile server, one by one: exact-value scrubbing of server text,
 * credentials recorded from the request as sent, scope validation, shell quoting of the
 * re-authorization command (run through a real /bin/sh), token-response validation and bounds.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isoTime } from "../../src/core/duration.js";
import { exitCodeFor, ProtocolError } from "../../src/core/errors.js";
import { isValidScope, validScope } from "../../src/core/scope.js";
import { scrubServerText, scrubText } from "../../src/core/secret.js";
import { reauthAction } from "../../src/manager/refresh-policy.js";
import { SentSecrets } from "../../src/oauth/sent-secrets.js";
import {
  InvalidTokenResponseError,
  MAX_ACCESS_TOKEN_LIFETIME_S,
  tokenResponseProblem,
  tokenSetFromResponse,
} from "../../src/oauth/token-response.js";

const dir = mkdtempSync(join(tmpdir(), "tk-hostile-units-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("server text is scrubbed of the exact values sent", () => {
  const rt = "rt-opaque-0123456789abcdef";
  it("removes each sent value and its percent-encoded spellings, wherever it appears", () => {
    const plus = "s3cr+t/value=";
    const text = `refresh_token ${rt} rejected; echo=${encodeURIComponent(plus)} form=${new URLSearchParams({ v: plus }).toString().slice(2)} raw=${plus}`;
    const out = scrubServerText(text, [rt, plus]);
    assert.ok(!out.includes(rt) && !out.includes(plus), out);
    assert.ok(!out.includes(encodeURIComponent(plus)), out);
    assert.match(out, /refresh_token \[redacted\] rejected/);
  });
  it("strips control characters first, so a value split by them is still found; caps the length", () => {
    const split = `${rt.slice(0, 10)}\u0000\u001b${rt.slice(10)}`;
    const out = scrubServerText(`x ${split}\r\n{"forged":true}\u202e ${"y".repeat(1000)}`, [rt], 120);
    assert.ok(!out.includes(rt), out);
    assert.ok(
      [...out].every((c) => c >= " " && c !== "\u007f" && c !== "\u202e"),
      JSON.stringify(out),
    );
    assert.ok(out.length <= 121, String(out.length));
  });
  it("records credentials from the request as it goes on the wire: form parameters and Basic auth", () => {
    const sent = new SentSecrets();
    const secret = "client secret+/=%";
    const basic = Buffer.from(`my-client:${new URLSearchParams({ s: secret }).toString().slice(2)}`).toString(
      "base64",
    );
    sent.noteRequest({
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: rt,
        code_verifier: "verifier-abcdefgh",
        device_code: "device-code-123",
        client_assertion: "eyJassertion.x.y",
      }),
      headers: { authorization: `Basic ${basic}` },
    });
    const out = sent.scrub(
      `${rt} verifier-abcdefgh device-code-123 eyJassertion.x.y ${secret} ${basic} grant_type`,
    );
    for (const v of [rt, "verifier-abcdefgh", "device-code-123", "eyJassertion", secret, basic])
      assert.ok(!out.includes(v), `${v} in ${out}`);
    assert.match(out, /grant_type/);
  });
});

describe("scopes", () => {
  it("accepts RFC 6749 §3.3 scope tokens and refuses anything else", () => {
    assert.ok(isValidScope("mcp:basic mcp:write offline_access https://x/y.z"));
    for (const bad of ['a"b', "a\\b", "a\nb", "ä", "a\tb", "", " ", "x".repeat(5000)])
      assert.equal(isValidScope(bad), false, JSON.stringify(bad));
    // $( ) ` ; | are scope-token characters: validation alone cannot make a shell line safe.
    assert.ok(isValidScope("a$(id)`id`;|"));
  });
  it("validScope names the source in a protocol error (exit 76)", () => {
    const e = (() => {
      try {
        validScope('tools "x"', "the WWW-Authenticate challenge of https://mcp.example/mcp");
      } catch (error) {
        return error;
      }
    })();
    assert.ok(e instanceof ProtocolError);
    assert.equal(exitCodeFor(e), 76);
    assert.match(e.message, /WWW-Authenticate challenge of https:\/\/mcp\.example\/mcp/);
  });
  it("pattern scrubbing leaves scopes alone and still removes credentials", () => {
    assert.equal(scrubText('requires scope "mcp:basic mcp:write"'), 'requires scope "mcp:basic mcp:write"');
    assert.equal(scrubText("basic mcp:write"), "basic mcp:write");
    const creds = scrubText("Authorization: Basic dXNlcjpwYXNzd29yZA== and Bearer abc.def.ghi");
    assert.ok(!creds.includes("dXNlcjpwYXNzd29yZA") && !creds.includes("abc.def.ghi"), creds);
    assert.equal(
      scrubText('Bearer realm="x", error="invalid_token"'),
      'Bearer realm="x", error="invalid_token"',
    );
  });
});

describe("the re-authorization command, pasted into a real shell", () => {
  /** Runs the action's command with `tokenkeeper` as a shell function that prints its arguments. */
  function argsWhenPasted(action: string): string[] {
    const command = /`(tokenkeeper .*)`$/.exec(action)?.[1];
    assert.ok(command, action);
    const out = execFileSync(
      "/bin/sh",
      ["-c", `tokenkeeper() { for a in "$@"; do printf '%s\\0' "$a"; done; }; ${command}`],
      { encoding: "utf8", cwd: dir },
    );
    return out.split("\0").slice(0, -1);
  }

  it("passes a hostile scope, URL and name through as plain arguments: nothing runs", () => {
    const marker = join(dir, "pwned");
    const scope = `tools $(touch ${marker}) \`touch ${marker}\` it's; touch ${marker} | x "q" \\n`;
    const url = `https://mcp.example/mcp?a=1&b=$(touch ${marker})`;
    const action = reauthAction("n'ame", url, "device_code", scope);
    assert.deepEqual(argsWhenPasted(action), ["login", url, "--name", "n'ame", "--device", "--scope", scope]);
    assert.equal(existsSync(marker), false, "the pasted command ran something");
  });
  it("quotes every part, even plain ones", () => {
    assert.equal(
      reauthAction("c1", "https://mcp.example/mcp", "authorization_code", "mcp:basic mcp:write"),
      "run `tokenkeeper login 'https://mcp.example/mcp' --name 'c1' --scope 'mcp:basic mcp:write'`",
    );
  });
});

describe("token responses are validated and bounded", () => {
  const ok = {
    access_token: "abc.DEF-ghi_~+/==",
    token_type: "Bearer",
    expires_in: 600,
    refresh_token: "r t!",
  };
  it("accepts a valid Bearer response", () => {
    assert.equal(tokenResponseProblem(ok), undefined);
  });
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["missing access_token", { token_type: "Bearer" }, /access_token is missing/],
    ["token_type missing", { access_token: "a" }, /token_type is missing/],
    ["token_type mac", { access_token: "a", token_type: "mac" }, /"mac" is not Bearer/],
    ["token_type DPoP", { access_token: "a", token_type: "DPoP" }, /DPoP.*does not support/],
    ["negative expires_in", { ...ok, expires_in: -5 }, /expires_in is not positive/],
    ["zero expires_in", { ...ok, expires_in: 0 }, /expires_in is not positive/],
    ["CR/LF in the access token", { ...ok, access_token: "abc\r\nX-Injected: 1" }, /b64token/],
    ["a space in the access token", { ...ok, access_token: "abc def" }, /b64token/],
    ["a control character in the refresh token", { ...ok, refresh_token: "r\nt" }, /refresh_token/],
    ["an invalid scope", { ...ok, scope: 'tools "x"' }, /scope/],
  ];
  for (const [name, response, why] of cases) {
    it(`refuses ${name}`, () => {
      assert.match(tokenResponseProblem(response as never) ?? "", why);
      assert.throws(
        () => tokenSetFromResponse({ response: response as never, receivedAt: 0, where: "https://as/token" }),
        (e: unknown) => e instanceof InvalidTokenResponseError && exitCodeFor(e) === 76,
      );
    });
  }
  it("never quotes the server's value in the problem", () => {
    const secretish = "at-SECRET\r\nvalue";
    assert.ok(!(tokenResponseProblem({ ...ok, access_token: secretish }) ?? "").includes("SECRET"));
    assert.ok(
      !(tokenResponseProblem({ access_token: "a", token_type: "SECRET-TYPE-LONGER-THAN-20" }) ?? "").includes(
        "SECRET",
      ),
    );
  });
  it("clamps absurd lifetimes, so every stored time stays a printable date", () => {
    const now = 1_700_000_000_000;
    const { tokens } = tokenSetFromResponse({
      response: { ...ok, expires_in: 1e13, refresh_token_expires_in: 1e13 } as never,
      receivedAt: now,
    });
    assert.equal(tokens.expiresAt, now + MAX_ACCESS_TOKEN_LIFETIME_S * 1000);
    assert.ok(isoTime(tokens.expiresAt) && isoTime(tokens.refreshTokenExpiresAt));
  });
  it("isoTime never throws, whatever the number", () => {
    for (const v of [1e13 * 1000, -1e17, Number.NaN, Number.POSITIVE_INFINITY, null, undefined])
      assert.equal(isoTime(v as number), null);
    assert.equal(isoTime(0), "1970-01-01T00:00:00.000Z");
  });
});
