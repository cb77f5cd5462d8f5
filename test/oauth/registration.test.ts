import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { inspect } from "node:util";
import { loginJson } from "../../src/cli/commands/login.js";
import { systemClock } from "../../src/core/clock.js";
import type { TokenkeeperError } from "../../src/core/errors.js";
import { Secret } from "../../src/core/secret.js";
import { summarize } from "../../src/oauth/login.js";
import type { AuthorizationServerMetadata } from "../../src/oauth/metadata-schemas.js";
import {
  chooseSecretAuthMethod,
  metadataDocumentClient,
  preregisteredClient,
  registerDynamicClient,
} from "../../src/oauth/registration.js";
import { makeRecord } from "../support/fixtures.js";
import { type StubServer, startStub } from "./stub-servers.js";

const deps = { clock: systemClock };
const servers: StubServer[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function registrar(
  reply: (body: Record<string, unknown>) => { status?: number; json?: unknown; body?: string },
) {
  const stub = await startStub((req) =>
    req.url.pathname === "/register" ? reply(JSON.parse(req.body)) : { status: 404 },
  );
  servers.push(stub);
  const metadata: AuthorizationServerMetadata = {
    issuer: stub.origin,
    registration_endpoint: `${stub.origin}/register`,
    token_endpoint: `${stub.origin}/token`,
  };
  return { stub, metadata };
}

describe("dynamic client registration (RFC 7591)", () => {
  it("registers a public native client for the browser flow with its loopback redirect", async () => {
    const { stub, metadata } = await registrar((body) => ({
      status: 201,
      json: { ...body, client_id: "c-1" },
    }));
    const client = await registerDynamicClient(
      metadata,
      { flow: "browser", redirectUri: "http://127.0.0.1:5555/callback", scope: "tools offline_access" },
      deps,
    );
    assert.deepEqual(client, {
      kind: "dynamic",
      clientId: "c-1",
      tokenEndpointAuthMethod: "none",
      redirectUris: ["http://127.0.0.1:5555/callback"],
    });
    const sent = JSON.parse(stub.requests[0]!.body);
    assert.deepEqual(sent, {
      client_name: "Tokenkeeper",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      redirect_uris: ["http://127.0.0.1:5555/callback"],
      application_type: "native",
      scope: "tools offline_access",
    });
    assert.equal(stub.requests[0]!.headers["content-type"], "application/json");
  });

  it("keeps a confidential client's secret and registration token as Secrets", async () => {
    const { metadata } = await registrar((body) => ({
      status: 201,
      json: {
        ...body,
        client_id: "m2m",
        client_secret: "s3cr3t-value",
        registration_access_token: "rat-value",
        client_secret_expires_at: 0,
      },
    }));
    const client = await registerDynamicClient(metadata, { flow: "client_credentials" }, deps);
    assert.equal(client.tokenEndpointAuthMethod, "client_secret_basic");
    assert.ok(client.clientSecret instanceof Secret);
    assert.equal(client.clientSecret.reveal(), "s3cr3t-value");
    assert.equal(client.clientSecretExpiresAt, 0);
    const shown = `${JSON.stringify(client)} ${inspect(client)}`;
    assert.doesNotMatch(shown, /s3cr3t-value|rat-value/);
  });

  it("reports the server's error and description, and refuses a server without DCR", async () => {
    const { metadata } = await registrar(() => ({
      status: 400,
      json: { error: "invalid_redirect_uri", error_description: "loopback not allowed" },
    }));
    await assert.rejects(
      registerDynamicClient(metadata, { flow: "browser", redirectUri: "http://127.0.0.1:1/callback" }, deps),
      (e: TokenkeeperError) => {
        assert.equal(e.code, "login_failed");
        assert.match(e.message, /failed with 400: invalid_redirect_uri \(loopback not allowed\)/);
        return true;
      },
    );
    await assert.rejects(
      registerDynamicClient({ issuer: "https://as.example" }, { flow: "browser" }, deps),
      (e: TokenkeeperError) =>
        e.fields.problem === "dcr_unsupported" &&
        /register a client with the provider and use `login --client-id`/.test(e.message),
    );
  });

  it("keeps control characters and length out of the server's error code", async () => {
    const { metadata } = await registrar(() => ({
      status: 400,
      json: {
        error: `invalid_client_metadata\u001b[2K\r${"x".repeat(500)}`,
        error_description: "no\nsecond line",
      },
    }));
    await assert.rejects(
      registerDynamicClient(metadata, { flow: "browser", redirectUri: "http://127.0.0.1:1/callback" }, deps),
      (e: TokenkeeperError) => {
        for (const c of ["\u001b", "\r", "\n"]) assert.ok(!e.message.includes(c), JSON.stringify(e.message));
        assert.ok(e.message.length < 400, e.message);
        assert.match(e.message, /invalid_client_metadata/);
        return true;
      },
    );
  });

  it("validates the registration response", async () => {
    const { metadata } = await registrar(() => ({ status: 201, json: { client_secret: "x" } }));
    await assert.rejects(
      registerDynamicClient(metadata, { flow: "browser" }, deps),
      (e: TokenkeeperError) => e.fields.field === "client_id",
    );
    const noSecret = await registrar((body) => ({ status: 201, json: { ...body, client_id: "c" } }));
    await assert.rejects(
      registerDynamicClient(noSecret.metadata, { flow: "client_credentials" }, deps),
      (e: TokenkeeperError) => e.fields.field === "client_secret",
    );
  });
});

describe("pre-registered clients", () => {
  it("picks client_secret_basic by default, post when only post is offered, none without a secret", () => {
    const secret = new Secret("pw");
    assert.equal(
      preregisteredClient({ clientId: "a", clientSecret: secret }, { issuer: "https://as" })
        .tokenEndpointAuthMethod,
      "client_secret_basic",
    );
    assert.equal(
      preregisteredClient(
        { clientId: "a", clientSecret: secret },
        { issuer: "https://as", token_endpoint_auth_methods_supported: ["client_secret_post"] },
      ).tokenEndpointAuthMethod,
      "client_secret_post",
    );
    assert.equal(
      preregisteredClient({ clientId: "a" }, { issuer: "https://as" }).tokenEndpointAuthMethod,
      "none",
    );
    assert.throws(
      () =>
        chooseSecretAuthMethod({
          issuer: "https://as",
          token_endpoint_auth_methods_supported: ["private_key_jwt"],
        }),
      /supports none of/,
    );
  });
});

describe("client ID metadata documents", () => {
  it("uses the document URL as client_id when the server supports it and the document names itself", async () => {
    const doc = await startStub((req, origin) =>
      req.url.pathname === "/client.json"
        ? {
            json: {
              client_id: `${origin}/client.json`,
              client_name: "Tokenkeeper",
              redirect_uris: ["http://127.0.0.1/callback"],
              token_endpoint_auth_method: "none",
            },
          }
        : req.url.pathname === "/wrong.json"
          ? { json: { client_id: "https://elsewhere.example/client.json" } }
          : { status: 404 },
    );
    servers.push(doc);
    const supported: AuthorizationServerMetadata = {
      issuer: "https://as.example",
      client_id_metadata_document_supported: true,
    };
    const { client } = await metadataDocumentClient(`${doc.origin}/client.json`, supported, deps);
    assert.deepEqual(client, {
      kind: "metadata_document",
      clientId: `${doc.origin}/client.json`,
      tokenEndpointAuthMethod: "none",
      redirectUris: ["http://127.0.0.1/callback"],
    });
    await assert.rejects(
      metadataDocumentClient(`${doc.origin}/wrong.json`, supported, deps),
      (e: TokenkeeperError) => e.fields.problem === "cimd_mismatch",
    );
    await assert.rejects(
      metadataDocumentClient(`${doc.origin}/client.json`, { issuer: "https://as.example" }, deps),
      (e: TokenkeeperError) => e.fields.problem === "cimd_unsupported",
    );
    await assert.rejects(
      metadataDocumentClient("http://docs.example.test/client.json", supported, deps),
      (e: TokenkeeperError) => e.code === "insecure_endpoint",
    );
  });
});

describe("the login summary of a registration", () => {
  it("prints a client_secret_expires_at beyond what a Date holds as the number it is, instead of failing after the save", () => {
    const record = makeRecord("cc", {
      grant: "client_credentials",
      client: {
        kind: "preregistered",
        clientId: "svc",
        clientSecret: new Secret("client-secret-value-0001"),
        tokenEndpointAuthMethod: "client_secret_basic",
        clientSecretExpiresAt: 1e13,
      },
    });
    const summary = summarize(record, false);
    assert.ok(
      summary.warnings.some((w) => w.includes("epoch second 10000000000000")),
      summary.warnings.join("\n"),
    );
    assert.equal(loginJson(summary).human_needed_at, null);
  });
});
