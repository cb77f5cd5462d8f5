import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  mergeScopes,
  parseBearerChallenge,
  parseInsufficientScope,
  parseWwwAuthenticate,
} from "../../src/oauth/www-authenticate.js";

const response = (status: number, header?: string) => ({
  status,
  headers: new Headers(header ? { "www-authenticate": header } : {}),
});

describe("WWW-Authenticate (RFC 9110 §11.6.1)", () => {
  it("separates challenges from parameters and keeps token68", () => {
    const challenges = parseWwwAuthenticate(
      'Negotiate abc123==, DPoP algs="ES256 PS256", Bearer realm="mcp", error=invalid_token',
    );
    assert.deepEqual(
      challenges.map((c) => c.scheme),
      ["negotiate", "dpop", "bearer"],
    );
    assert.equal(challenges[0]!.token68, "abc123==");
    assert.deepEqual(challenges[1]!.params, { algs: "ES256 PS256" });
    assert.deepEqual(challenges[2]!.params, { realm: "mcp", error: "invalid_token" });
  });
  it("unescapes quoted strings, ignores case of names, keeps the first duplicate", () => {
    const c = parseBearerChallenge(
      'BEARER Scope="a \\"b\\"", SCOPE="ignored", Resource_Metadata="https://x/y"',
    );
    assert.deepEqual(c, { scope: 'a "b"', resourceMetadata: "https://x/y" });
  });
  it("normalizes scope whitespace and drops an empty scope", () => {
    assert.deepEqual(parseBearerChallenge('Bearer scope="  a   b "'), { scope: "a b" });
    assert.deepEqual(parseBearerChallenge('Bearer scope=""'), {});
  });
  it("is bounded and total on arbitrary header values", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 500 }), (s) => {
        const out = parseWwwAuthenticate(s);
        assert.ok(Array.isArray(out));
        parseBearerChallenge(s);
      }),
    );
    assert.doesNotThrow(() => parseWwwAuthenticate(`Bearer ${"a=".repeat(100_000)}`));
  });
});

describe("step-up: parseInsufficientScope (MCP scope challenges, RFC 6750 §3.1)", () => {
  it("turns a 403 insufficient_scope into the scope required", () => {
    const r = parseInsufficientScope(
      response(
        403,
        'Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", error_description="Tool admin_echo requires scope mcp:admin", resource_metadata="https://m/.well-known/oauth-protected-resource/mcp"',
      ),
    );
    assert.deepEqual(r, {
      error: "insufficient_scope",
      requiredScope: "mcp:tools mcp:admin",
      description: "Tool admin_echo requires scope mcp:admin",
      resourceMetadata: "https://m/.well-known/oauth-protected-resource/mcp",
    });
  });
  it("ignores anything else", () => {
    assert.equal(parseInsufficientScope(response(401, 'Bearer error="insufficient_scope"')), undefined);
    assert.equal(parseInsufficientScope(response(403, 'Bearer error="invalid_token"')), undefined);
    assert.equal(parseInsufficientScope(response(403)), undefined);
    assert.equal(parseInsufficientScope(response(403, 'Basic realm="x"')), undefined);
  });
  it("works without a scope (the server may not say)", () => {
    assert.deepEqual(parseInsufficientScope(response(403, "Bearer error=insufficient_scope")), {
      error: "insufficient_scope",
    });
  });
  it("merges scope strings as sets", () => {
    assert.equal(mergeScopes("a b", undefined, "b c", " "), "a b c");
    assert.equal(mergeScopes(undefined, ""), undefined);
  });
});
