/** The record checks that replace zod on the token path: what they accept, reject, and report. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StoreCorruptError } from "../../src/core/errors.js";
import { type ConnectorRecord, decodeRecord, encodeRecord, initialState } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import {
  nullable,
  number,
  object,
  oneOf,
  optional,
  ShapeError,
  string,
  withDefault,
} from "../../src/core/shape.js";

const record: ConnectorRecord = {
  schema: 1,
  name: "alpha",
  grant: "authorization_code",
  server: {
    mcpUrl: "https://mcp.example/mcp",
    resource: "https://mcp.example/mcp",
    issuer: "https://as.example",
    metadata: { issuer: "https://as.example", token_endpoint: "https://as.example/token", extra: [1, 2] },
  },
  client: {
    kind: "dynamic",
    clientId: "c1",
    tokenEndpointAuthMethod: "none",
    redirectUris: ["http://127.0.0.1/cb"],
  },
  tokens: {
    accessToken: new Secret("at-secret-value"),
    tokenType: "Bearer",
    refreshToken: new Secret("rt-secret-value"),
    expiresAt: 2_000_000,
    obtainedAt: 1_000_000,
  },
  state: initialState(),
  settings: { headers: { "x-team": "a" } },
  createdAt: 1,
  updatedAt: 2,
};

function corruptField(data: unknown): string {
  try {
    decodeRecord(JSON.stringify(data), "file.json");
  } catch (error) {
    assert.ok(error instanceof StoreCorruptError);
    assert.doesNotMatch(error.message, /secret-value/);
    return String(error.fields.field);
  }
  assert.fail("accepted a corrupt record");
}

describe("record checks", () => {
  it("a record survives encode and decode; server metadata keeps its unknown keys", () => {
    const back = decodeRecord(encodeRecord(record), "file.json");
    assert.equal(back.tokens?.accessToken.reveal(), "at-secret-value");
    assert.deepEqual(back.server.metadata, record.server.metadata);
    assert.deepEqual(back.settings, record.settings);
    assert.equal(encodeRecord(back), encodeRecord(record));
  });

  it("names the first bad field by its path, without quoting the value", () => {
    const good = JSON.parse(encodeRecord(record));
    assert.equal(
      corruptField({ ...good, tokens: { ...good.tokens, access_token: "" } }),
      "tokens.access_token",
    );
    assert.equal(
      corruptField({ ...good, tokens: { ...good.tokens, expires_at: "soon" } }),
      "tokens.expires_at",
    );
    assert.equal(corruptField({ ...good, grant: "password" }), "grant");
    assert.equal(
      corruptField({ ...good, state: { ...good.state, refresh_count: -1 } }),
      "state.refresh_count",
    );
    assert.equal(
      corruptField({ ...good, client: { ...good.client, redirect_uris: ["a", 3] } }),
      "client.redirect_uris.1",
    );
    assert.equal(corruptField({ ...good, schema: 2 }), "schema");
    assert.equal(corruptField([good]), "(root)");
  });

  it("drops unknown keys, fills a missing settings object, keeps absent optionals absent", () => {
    const good = JSON.parse(encodeRecord(record));
    delete good.settings;
    const back = decodeRecord(JSON.stringify({ ...good, surprise: 1 }), "f");
    assert.deepEqual(back.settings, {});
    assert.equal("surprise" in back, false);
    assert.equal("scope" in back, false);
  });

  it("combinators: finite numbers, enums, nullable, optional, defaults", () => {
    const check = object({
      n: number({ int: true, min: 1 }),
      kind: oneOf(["a", "b"]),
      at: nullable(number()),
      note: optional(string({ nonEmpty: true })),
      list: withDefault(object({}), () => ({})),
    });
    assert.deepEqual(check({ n: 2, kind: "a", at: null }, ""), { n: 2, kind: "a", at: null, list: {} });
    for (const bad of [
      { n: Number.NaN },
      { n: 1.5 },
      { n: 0 },
      { n: 1, kind: "c" },
      { n: 1, kind: "a", at: "x" },
    ]) {
      assert.throws(() => check(bad, ""), ShapeError);
    }
    assert.throws(() => check(JSON.parse('{"n":1,"kind":"a","at":1e400}'), ""), ShapeError);
  });
});
