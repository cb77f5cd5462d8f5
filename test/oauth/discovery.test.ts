import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { TokenkeeperError } from "../../src/core/errors.js";
import {
  authorizationServerMetadataUrls,
  canonicalServerUri,
  capabilitiesOf,
  discover,
  issuerMatches,
  protectedResourceMetadataUrls,
  resourceCovers,
  type Trace,
} from "../../src/oauth/discovery.js";
import { type StubResponse, type StubServer, startFakeOAuth, startStub } from "./stub-servers.js";

const deps = { clock: systemClock };

/** Asserts that `promise` rejects with a TokenkeeperError whose code and `problem` are as given. */
async function rejectsWith(promise: Promise<unknown>, code: string, problem?: string, messagePart?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TokenkeeperError, `expected a TokenkeeperError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (problem) assert.equal(error.fields.problem, problem, error.message);
    if (messagePart) assert.match(error.message, messagePart);
    return true;
  });
}

describe("canonical server URI (RFC 8707 §2, MCP canonical URI)", () => {
  it("lower-cases scheme and host, drops the fragment and default port, keeps the path", () => {
    assert.equal(canonicalServerUri("HTTPS://MCP.Example.COM:443/Mcp#frag"), "https://mcp.example.com/Mcp");
    assert.equal(canonicalServerUri("https://mcp.example.com/"), "https://mcp.example.com");
    assert.equal(canonicalServerUri("https://mcp.example.com"), "https://mcp.example.com");
    assert.equal(canonicalServerUri("https://mcp.example.com/api/"), "https://mcp.example.com/api/");
    assert.equal(canonicalServerUri("http://127.0.0.1:8080/mcp"), "http://127.0.0.1:8080/mcp");
  });
  it("refuses non-http schemes, relative URLs and embedded credentials", () => {
    assert.throws(() => canonicalServerUri("ftp://x/mcp"), /https/);
    assert.throws(() => canonicalServerUri("/mcp"), /absolute/);
    assert.throws(() => canonicalServerUri("https://user:pw@x/mcp"), /credentials/);
  });
});

describe("resource matching (RFC 9728 §3.3)", () => {
  it("accepts the same URL or a parent path on the same origin, on segment boundaries", () => {
    assert.ok(resourceCovers("https://a.example/mcp", "https://a.example/mcp"));
    assert.ok(resourceCovers("https://a.example", "https://a.example/mcp"));
    assert.ok(resourceCovers("https://a.example/", "https://a.example/mcp"));
    assert.ok(resourceCovers("https://a.example/api", "https://a.example/api/mcp"));
  });
  it("refuses another origin, a sibling path, a longer path", () => {
    assert.ok(!resourceCovers("https://b.example/mcp", "https://a.example/mcp"));
    assert.ok(!resourceCovers("https://a.example:8443/mcp", "https://a.example/mcp"));
    assert.ok(!resourceCovers("http://a.example/mcp", "https://a.example/mcp"));
    assert.ok(!resourceCovers("https://a.example/api", "https://a.example/api2/mcp"));
    assert.ok(!resourceCovers("https://a.example/mcp/v2", "https://a.example/mcp"));
  });
  it("compares issuers exactly, except the slash of a bare origin (RFC 8414 §3.3)", () => {
    assert.ok(issuerMatches("https://as.example", "https://as.example/"));
    assert.ok(issuerMatches("https://as.example/t1", "https://as.example/t1"));
    assert.ok(!issuerMatches("https://as.example/t1", "https://as.example/t1/"));
    assert.ok(!issuerMatches("https://as.example", "https://evil.example"));
  });
});

describe("well-known URL order", () => {
  it("protected resource metadata: path-inserted, then root", () => {
    assert.deepEqual(protectedResourceMetadataUrls("https://a.example/public/mcp"), [
      "https://a.example/.well-known/oauth-protected-resource/public/mcp",
      "https://a.example/.well-known/oauth-protected-resource",
    ]);
    assert.deepEqual(protectedResourceMetadataUrls("https://a.example"), [
      "https://a.example/.well-known/oauth-protected-resource",
    ]);
  });
  it("authorization server with a path: RFC 8414 inserted, OIDC inserted, OIDC appended", () => {
    assert.deepEqual(
      authorizationServerMetadataUrls("https://auth.example/tenant1").map((c) => c.url),
      [
        "https://auth.example/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example/.well-known/openid-configuration/tenant1",
        "https://auth.example/tenant1/.well-known/openid-configuration",
      ],
    );
  });
  it("authorization server without a path: RFC 8414, then OIDC", () => {
    assert.deepEqual(
      authorizationServerMetadataUrls("https://auth.example/").map((c) => c.url),
      [
        "https://auth.example/.well-known/oauth-authorization-server",
        "https://auth.example/.well-known/openid-configuration",
      ],
    );
  });
});

describe("capabilities", () => {
  it("reads what login and doctor need, with RFC 8414 defaults", () => {
    const c = capabilitiesOf({
      issuer: "https://as.example",
      authorization_endpoint: "https://as.example/a",
      code_challenge_methods_supported: ["plain"],
    });
    assert.equal(c.pkceS256, false);
    assert.equal(c.refreshToken, undefined);
    assert.equal(c.authorizationCode, true);
    assert.equal(c.dynamicRegistration, false);
    const d = capabilitiesOf({
      issuer: "https://as.example",
      device_authorization_endpoint: "https://as.example/d",
      grant_types_supported: [
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "client_credentials",
      ],
      client_id_metadata_document_supported: true,
      scopes_supported: ["offline_access"],
    });
    assert.deepEqual(
      [d.deviceFlow, d.refreshToken, d.clientCredentials, d.clientIdMetadataDocument, d.offlineAccess],
      [true, true, true, true, true],
    );
  });
});

describe("discovery against live stub servers", () => {
  const servers: StubServer[] = [];
  after(async () => Promise.all(servers.map((s) => s.close())));
  const track = <T extends StubServer>(s: T) => {
    servers.push(s);
    return s;
  };

  it("follows the challenge's resource_metadata, then RFC 8414 metadata", async () => {
    const fake = track(await startFakeOAuth());
    const trace: Trace = [];
    const result = await discover(fake.mcpUrl, deps, {}, trace);
    assert.equal(result.resource, fake.mcpUrl);
    assert.equal(result.authorizationServer.issuer, fake.issuer);
    assert.equal(result.challenge.scope, "tools");
    assert.deepEqual(fake.paths(), [
      "/mcp",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-authorization-server",
    ]);
    assert.equal(trace.length, 3);
    assert.equal(fake.requests[0]!.method, "POST");
  });

  it("without resource_metadata, tries the path-inserted well-known URI, then the root", async () => {
    const fake = track(await startFakeOAuth({ challenge: () => 'Bearer realm="x"', prmAt: "root" }));
    const result = await discover(fake.mcpUrl, deps);
    assert.equal(result.protectedResource.fromChallenge, false);
    assert.deepEqual(fake.paths().slice(0, 3), [
      "/mcp",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-protected-resource",
    ]);
  });

  it("finds OpenID metadata for a path issuer in the spec's order", async () => {
    const insert = track(await startFakeOAuth({ issuerPath: "/tenant1", metadataAt: "oidc-insert" }));
    const r1 = await discover(insert.mcpUrl, deps);
    assert.equal(r1.authorizationServer.kind, "oidc");
    assert.deepEqual(insert.paths().slice(2), [
      "/.well-known/oauth-authorization-server/tenant1",
      "/.well-known/openid-configuration/tenant1",
    ]);

    const append = track(await startFakeOAuth({ issuerPath: "/tenant1", metadataAt: "oidc-append" }));
    await discover(append.mcpUrl, deps);
    assert.deepEqual(append.paths().slice(2), [
      "/.well-known/oauth-authorization-server/tenant1",
      "/.well-known/openid-configuration/tenant1",
      "/tenant1/.well-known/openid-configuration",
    ]);
  });

  it("refuses an issuer mismatch (RFC 8414 §3.3)", async () => {
    const fake = track(
      await startFakeOAuth({ metadata: (m) => ({ ...m, issuer: "http://127.0.0.1:1/evil" }) }),
    );
    await rejectsWith(discover(fake.mcpUrl, deps), "protocol_error", "issuer_mismatch", /states issuer/);
  });

  it("refuses an http: authorization server that is not loopback", async () => {
    const fake = track(
      await startFakeOAuth({ prm: (d) => ({ ...d, authorization_servers: ["http://as.example.test"] }) }),
    );
    await rejectsWith(
      discover(fake.mcpUrl, deps),
      "insecure_endpoint",
      undefined,
      /authorization server http:\/\/as\.example\.test/,
    );
    assert.equal(fake.paths().length, 2, "nothing is fetched from the insecure server");
  });

  it("refuses metadata whose endpoints are plain http", async () => {
    const fake = track(
      await startFakeOAuth({
        metadata: (m) => ({ ...m, token_endpoint: "http://tokens.example.test/token" }),
      }),
    );
    await rejectsWith(discover(fake.mcpUrl, deps), "insecure_endpoint", undefined, /token_endpoint/);
  });

  it("refuses protected resource metadata naming another resource", async () => {
    const fake = track(
      await startFakeOAuth({ prm: (d) => ({ ...d, resource: "https://other.example/mcp" }) }),
    );
    await rejectsWith(discover(fake.mcpUrl, deps), "protocol_error", "resource_mismatch", /another resource/);
  });

  it("names the field and the server when metadata is invalid", async () => {
    const fake = track(
      await startFakeOAuth({ metadata: (m) => ({ ...m, code_challenge_methods_supported: "S256" }) }),
    );
    await assert.rejects(discover(fake.mcpUrl, deps), (e: TokenkeeperError) => {
      assert.equal(e.fields.field, "code_challenge_methods_supported");
      assert.match(
        e.message,
        /authorization server metadata from http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-authorization-server is invalid/,
      );
      return true;
    });
    const noList = track(await startFakeOAuth({ prm: (d) => ({ ...d, authorization_servers: [] }) }));
    await rejectsWith(
      discover(noList.mcpUrl, deps),
      "protocol_error",
      "invalid_metadata",
      /authorization_servers/,
    );
    const garbage = track(
      await startStub((req) =>
        req.url.pathname === "/mcp"
          ? { status: 401, headers: { "www-authenticate": "Bearer" } }
          : { body: "<html>" },
      ),
    );
    await rejectsWith(discover(`${garbage.origin}/mcp`, deps), "protocol_error", "invalid_json");
  });

  it("follows a same-origin redirect but not one to another origin", async () => {
    const target = track(await startFakeOAuth());
    const redirecting = track(
      await startStub((req, origin): StubResponse => {
        const p = req.url.pathname;
        if (p === "/mcp")
          return {
            status: 401,
            headers: { "www-authenticate": `Bearer resource_metadata="${origin}/prm-old"` },
          };
        if (p === "/prm-old") return { status: 301, headers: { location: "/prm-new" } };
        if (p === "/prm-new")
          return {
            status: 302,
            headers: { location: `${target.origin}/.well-known/oauth-protected-resource/mcp` },
          };
        return { status: 404 };
      }),
    );
    await rejectsWith(discover(`${redirecting.origin}/mcp`, deps), "protocol_error", "cross_origin_redirect");
    assert.deepEqual(redirecting.paths(), ["/mcp", "/prm-old", "/prm-new"]);
    assert.equal(target.requests.length, 0);
  });

  it("bounds the size of a metadata document", async () => {
    const big = track(
      await startStub((req, origin) =>
        req.url.pathname === "/mcp"
          ? { status: 401, headers: { "www-authenticate": `Bearer resource_metadata="${origin}/prm"` } }
          : { json: { resource: `${origin}/mcp`, authorization_servers: [origin], pad: "x".repeat(2048) } },
      ),
    );
    await rejectsWith(
      discover(`${big.origin}/mcp`, { ...deps, maxBytes: 1024 }),
      "protocol_error",
      undefined,
      /limit is 1024/,
    );
  });

  it("says clearly when the server needs no authorization, or its challenge names missing metadata", async () => {
    // A catch-all that answers 200 everywhere, even at the well-known URLs.
    const catchAll = track(await startStub(() => ({ json: { jsonrpc: "2.0", id: 0, result: {} } })));
    await rejectsWith(discover(`${catchAll.origin}/mcp`, deps), "protocol_error", "no_auth_required");
    const open = track(
      await startStub((req) =>
        req.url.pathname.startsWith("/.well-known/")
          ? { status: 404 }
          : { json: { jsonrpc: "2.0", id: 0, result: {} } },
      ),
    );
    await rejectsWith(discover(`${open.origin}/mcp`, deps), "protocol_error", "no_auth_required");
    // The well-known locations were asked before concluding there is nothing to log in to.
    assert.deepEqual(open.paths(), [
      "/mcp",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-protected-resource",
    ]);
    const named = track(
      await startStub((req, origin) =>
        req.url.pathname === "/mcp"
          ? {
              status: 401,
              headers: { "www-authenticate": `Bearer resource_metadata="${origin}/prm"` },
            }
          : { status: 404 },
      ),
    );
    await rejectsWith(
      discover(`${named.origin}/mcp`, deps),
      "protocol_error",
      "no_resource_metadata",
      /tried/,
    );
  });

  it("a server that lets initialize through still gets a login: well-known metadata after a 2xx probe", async () => {
    const fake = track(
      await startFakeOAuth({
        mcp: (req) => (req.method === "POST" ? { json: { jsonrpc: "2.0", id: 0, result: {} } } : undefined),
      }),
    );
    const result = await discover(fake.mcpUrl, deps);
    assert.equal(result.legacy, false);
    assert.equal(result.resource, fake.mcpUrl);
    assert.equal(result.challenge.scope, undefined);
    assert.deepEqual(result.protectedResource.metadata.scopes_supported, ["tools", "admin"]);
    assert.deepEqual(fake.paths(), [
      "/mcp",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-authorization-server",
    ]);
  });

  it("2025-03-26 server: authorization-server metadata at the server's origin, issuer on that origin", async () => {
    // Served at the root, as a 2025-03-26 server does, naming an issuer under /oauth.
    const rooted = track(
      await startStub((req, origin) => {
        if (req.url.pathname === "/.well-known/oauth-authorization-server") {
          return {
            json: {
              issuer: `${origin}/oauth`,
              authorization_endpoint: `${origin}/oauth/authorize`,
              token_endpoint: `${origin}/oauth/token`,
              response_types_supported: ["code"],
              code_challenge_methods_supported: ["S256"],
            },
          };
        }
        return req.url.pathname === "/mcp"
          ? { status: 401, headers: { "www-authenticate": 'Bearer realm="x"' } }
          : { status: 404 };
      }),
    );
    const result = await discover(`${rooted.origin}/mcp`, deps);
    assert.equal(result.legacy, true);
    assert.equal(result.authorizationServer.issuer, `${rooted.origin}/oauth`);
    assert.equal(result.authorizationServer.metadata.token_endpoint, `${rooted.origin}/oauth/token`);
    assert.equal(result.resource, `${rooted.origin}/mcp`);
    assert.deepEqual(rooted.paths(), [
      "/mcp",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-authorization-server",
    ]);
  });

  it("2025-03-26 server without any metadata: the default endpoints at its origin", async () => {
    const bare = track(
      await startStub((req) =>
        req.url.pathname === "/mcp"
          ? { status: 401, headers: { "www-authenticate": "Bearer" } }
          : { status: 404 },
      ),
    );
    const result = await discover(`${bare.origin}/mcp`, deps);
    assert.equal(result.legacy, true);
    assert.equal(result.authorizationServer.issuer, bare.origin);
    const m = result.authorizationServer.metadata;
    assert.equal(m.authorization_endpoint, `${bare.origin}/authorize`);
    assert.equal(m.token_endpoint, `${bare.origin}/token`);
    assert.equal(m.registration_endpoint, `${bare.origin}/register`);
    assert.equal(result.capabilities.pkceS256, true);
  });

  it("2025-03-26 server: metadata naming an issuer on another origin is refused", async () => {
    const other = track(
      await startStub((req) =>
        req.url.pathname === "/.well-known/oauth-authorization-server"
          ? {
              json: {
                issuer: "http://127.0.0.2:1/",
                authorization_endpoint: "http://127.0.0.2:1/authorize",
                token_endpoint: "http://127.0.0.2:1/token",
              },
            }
          : req.url.pathname === "/mcp"
            ? { status: 401 }
            : { status: 404 },
      ),
    );
    await rejectsWith(discover(`${other.origin}/mcp`, deps), "protocol_error", "issuer_mismatch");
  });

  it("lets the user pick one of several listed authorization servers, and only a listed one", async () => {
    const fake = track(
      await startFakeOAuth({
        prm: (d, origin) => ({ ...d, authorization_servers: ["https://first.example", origin] }),
      }),
    );
    const result = await discover(fake.mcpUrl, deps, { authorizationServer: fake.issuer });
    assert.equal(result.authorizationServer.issuer, fake.issuer);
    await rejectsWith(
      discover(fake.mcpUrl, deps, { authorizationServer: "https://evil.example" }),
      "protocol_error",
      "authorization_server_not_listed",
    );
  });
});

describe("legacy HTTP+SSE endpoints", () => {
  it("probes with GET when POST is not allowed", async () => {
    const fake = await startFakeOAuth();
    const sse = await startStub((req): StubResponse => {
      if (req.method === "POST") return { status: 405, headers: { allow: "GET" } };
      return {
        status: 401,
        headers: {
          "www-authenticate": `Bearer resource_metadata="${fake.origin}/.well-known/oauth-protected-resource/mcp"`,
        },
      };
    });
    try {
      // The PRM names the fake's /mcp, so the probe of another origin is refused as a mismatch:
      // what matters here is that the GET found the challenge.
      await rejectsWith(discover(`${sse.origin}/sse`, deps), "protocol_error", "resource_mismatch");
      assert.deepEqual(
        sse.requests.map((r) => r.method),
        ["POST", "GET"],
      );
    } finally {
      await Promise.all([fake.close(), sse.close()]);
    }
  });
});
