import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseBearerChallenge, parseWwwAuthenticate } from "../../src/oauth/www-authenticate.js";

describe("WWW-Authenticate parsing", () => {
  it("reads the MCP Bearer challenge", () => {
    const c = parseBearerChallenge(
      'Bearer error="invalid_token", error_description="The access token expired", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"',
    );
    assert.deepEqual(c, {
      error: "invalid_token",
      errorDescription: "The access token expired",
      resourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
    });
  });
  it("reads insufficient_scope with a scope list and unquoted values", () => {
    assert.deepEqual(parseBearerChallenge('Bearer error=insufficient_scope, scope="mcp:admin mcp:tools"'), {
      error: "insufficient_scope",
      scope: "mcp:admin mcp:tools",
    });
  });
  it("finds Bearer among several challenges, and handles a bare scheme", () => {
    assert.equal(parseWwwAuthenticate('Basic realm="x", Bearer realm="y"').length, 2);
    assert.deepEqual(parseBearerChallenge('Basic realm="x", Bearer realm="y", scope="a"'), {
      realm: "y",
      scope: "a",
    });
    assert.deepEqual(parseBearerChallenge("Bearer"), {});
    assert.equal(parseBearerChallenge(null), undefined);
    assert.equal(parseBearerChallenge("Basic realm=x"), undefined);
  });
  it("never throws on arbitrary input", () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => void parseWwwAuthenticate(s)));
  });
});
