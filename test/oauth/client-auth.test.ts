import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { basicCredentials, formEncode, loadSigningKey } from "../../src/oauth/client-auth.js";
import { oauthClientFor } from "../../src/oauth/token-endpoint.js";
import { makeRecord } from "../support/fixtures.js";

/** What a server that decodes the Basic credentials (RFC 6749 §2.3.1) sees. */
function decoded(header: string): [string, string] {
  const plain = Buffer.from(header.replace(/^Basic /, ""), "base64").toString("utf8");
  const at = plain.indexOf(":");
  const decode = (v: string) => new URLSearchParams(`v=${v}`).get("v") ?? "";
  return [decode(plain.slice(0, at)), decode(plain.slice(at + 1))];
}

/** What a server that compares the raw Basic credentials sees. */
function raw(header: string): [string, string] {
  const [id, secret] = Buffer.from(header.replace(/^Basic /, ""), "base64")
    .toString("utf8")
    .split(":");
  return [id ?? "", secret ?? ""];
}

describe("client_secret_basic encoding (RFC 6749 §2.3.1)", () => {
  it("leaves ids and secrets made of alphanumerics and -._* as they are: raw-comparing servers accept them", () => {
    const header = basicCredentials("pre-registered-client", "pre-registered-secret");
    assert.deepEqual(raw(header), ["pre-registered-client", "pre-registered-secret"]);
    assert.deepEqual(decoded(header), ["pre-registered-client", "pre-registered-secret"]);
  });

  it("encodes what must be encoded, so a decoding server gets the exact values back", () => {
    for (const [id, secret] of [
      ["client:with:colons", "s3cr3t/+=="],
      ["ünïcode id", "a b&c%d~e!f'g(h)i"],
    ] as const) {
      const header = basicCredentials(id, secret);
      assert.deepEqual(decoded(header), [id, secret]);
      // The colon separating id from secret stays unambiguous.
      assert.equal(raw(header).length, 2);
      assert.ok(!raw(header)[0].includes(":"));
    }
    assert.equal(formEncode("a b"), "a+b");
    assert.equal(formEncode("a-b.c_d*e"), "a-b.c_d*e");
    assert.equal(formEncode("~"), "%7E");
  });
});

describe("private_key_jwt signing keys", () => {
  it("reads EC, RSA and Ed25519 PEM keys and names their JWS algorithm; refuses what is not a key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tk-keys-"));
    try {
      const cases = [
        [generateKeyPairSync("ec", { namedCurve: "P-256" }), "ES256"],
        [generateKeyPairSync("ec", { namedCurve: "P-384" }), "ES384"],
        [generateKeyPairSync("rsa", { modulusLength: 2048 }), "RS256"],
        [generateKeyPairSync("ed25519"), "EdDSA"],
      ] as const;
      for (const [i, [pair, alg]] of cases.entries()) {
        const file = join(dir, `k${i}.pem`);
        writeFileSync(file, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
        const key = await loadSigningKey(file);
        assert.equal(key.alg, alg);
        assert.deepEqual(key.key.usages, ["sign"]);
        assert.equal(key.key.extractable, false);
      }
      await assert.rejects(loadSigningKey(join(dir, "missing.pem")), ConfigError);
      const junk = join(dir, "junk.pem");
      writeFileSync(junk, "not a key");
      await assert.rejects(
        loadSigningKey(junk),
        (e: unknown) => e instanceof ConfigError && !/not a key/.test(e.message),
      );
      const pub = join(dir, "public.pem");
      writeFileSync(
        pub,
        generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }),
      );
      await assert.rejects(loadSigningKey(pub), ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("private_key_jwt assertions on the server's clock", () => {
  it("dates iat/nbf/exp by the measured skew (a server 65 s behind gets an assertion valid on its clock), none below the resolution", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tk-assert-"));
    try {
      const file = join(dir, "key.pem");
      const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
      writeFileSync(file, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
      const iatFor = async (clockSkewMs: number | undefined) => {
        const base = makeRecord("pkjwt");
        const record = makeRecord("pkjwt", {
          grant: "client_credentials",
          client: {
            kind: "preregistered",
            clientId: "svc",
            tokenEndpointAuthMethod: "private_key_jwt",
            privateKeyFile: file,
          },
          state: { ...base.state, ...(clockSkewMs !== undefined ? { clockSkewMs } : {}) },
        });
        const ctx = oauthClientFor(record);
        const body = new URLSearchParams();
        await ctx.auth(ctx.as, ctx.client, body, new Headers());
        const payload = body.get("client_assertion")!.split(".")[1]!;
        const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
        assert.equal(claims.nbf, claims.iat);
        return claims.iat as number;
      };
      const now = Math.floor(Date.now() / 1000);
      assert.ok(Math.abs((await iatFor(undefined)) - now) <= 2);
      assert.ok(Math.abs((await iatFor(1_000)) - now) <= 2, "below the resolution: no correction");
      assert.ok(Math.abs((await iatFor(-65_000)) - (now - 65)) <= 2);
      // A record that names no key file is a configuration error that says so, not "ENOENT ''".
      const keyless = makeRecord("keyless", {
        client: { kind: "preregistered", clientId: "svc", tokenEndpointAuthMethod: "private_key_jwt" },
      });
      assert.throws(
        () => oauthClientFor(keyless),
        (e: unknown) => e instanceof ConfigError && /names no key file/.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
