/**
 * Login's exit code says what to do: a registration server that is down is "try later" (75),
 * not "misconfigured" (78); an oversized response header is the server's protocol fault (76),
 * not a network blip (75). Nothing is stored either way.
 */
import assert from "node:assert/strict";
import { after, afterEach, beforeEach, describe, it } from "node:test";
import { type FakeOAuth, type StubServer, startFakeOAuth, startStub } from "../oauth/stub-servers.js";
import { type Cli, makeCli } from "./auth-cli-harness.js";

let cli: Cli;
const servers: (FakeOAuth | StubServer)[] = [];
beforeEach(async () => {
  cli = await makeCli();
});
afterEach(() => cli.cleanup());
after(() => Promise.all(servers.map((s) => s.close())));

describe("login exit codes for failing servers", () => {
  for (const status of [500, 503, 429]) {
    it(`dynamic client registration answering ${status} exits 75 (try later)`, async () => {
      const registrar = await startStub(() => ({
        status,
        headers: { "retry-after": "30" },
        json: { error: "server_error", error_description: "down for maintenance" },
      }));
      servers.push(registrar);
      const fake = await startFakeOAuth({
        metadata: (m) => ({ ...m, registration_endpoint: `${registrar.origin}/register` }),
      });
      servers.push(fake);
      const r = await cli.run(["login", fake.mcpUrl, "--name", "dcr", "--json"]);
      assert.equal(r.code, 75, r.stderr);
      const error = r.json!.error as {
        code: string;
        problem: string;
        status: number;
        retry_after_ms?: number;
      };
      assert.equal(error.code, "transient");
      assert.equal(error.problem, "dcr_unavailable");
      assert.equal(error.status, status);
      assert.equal(error.retry_after_ms, 30_000);
      assert.equal(registrar.requests.length, 1);
      assert.equal(fake.counts.authorizations, 0);
      assert.deepEqual(await cli.storedNames(), []);
    });
  }

  it("dynamic client registration refused with 400 stays a login failure (78)", async () => {
    const registrar = await startStub(() => ({ status: 400, json: { error: "invalid_client_metadata" } }));
    servers.push(registrar);
    const fake = await startFakeOAuth({
      metadata: (m) => ({ ...m, registration_endpoint: `${registrar.origin}/register` }),
    });
    servers.push(fake);
    const r = await cli.run(["login", fake.mcpUrl, "--name", "dcr400"]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /invalid_client_metadata/);
  });

  it("a 64 KB WWW-Authenticate header exits 76 (protocol), not 75", async () => {
    const fake = await startFakeOAuth({ challenge: () => `Bearer realm="${"x".repeat(64 * 1024)}"` });
    servers.push(fake);
    const r = await cli.run(["login", fake.mcpUrl, "--name", "huge", "--json"]);
    assert.equal(r.code, 76, r.stderr);
    const error = r.json!.error as { code: string; problem: string };
    assert.equal(error.code, "protocol_error");
    assert.equal(error.problem, "malformed_response");
    assert.match(r.stderr, /response headers larger than the client accepts/);
    assert.ok(r.stderr.length < 2_000, "the header is not echoed");
    assert.equal(fake.counts.registrations, 0);
    assert.deepEqual(await cli.storedNames(), []);
  });
});
