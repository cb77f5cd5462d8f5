import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type FakeOAuth, startFakeOAuth } from "../oauth/stub-servers.js";
import { type Cli, makeCli } from "./auth-cli-harness.js";

let bed: TestBed;
let cli: Cli;
const fakes: FakeOAuth[] = [];

before(async () => {
  bed = await startTestBed();
});
after(async () => {
  await bed.close();
  await Promise.all(fakes.map((f) => f.close()));
});
beforeEach(async () => {
  cli = await makeCli();
  bed.as.resetCounters();
});
afterEach(() => cli.cleanup());

interface JsonCheck {
  id: string;
  status: string;
  detail: string;
  fix?: string;
}

function checks(json: Record<string, unknown> | undefined): Record<string, JsonCheck> {
  return Object.fromEntries(((json?.checks as JsonCheck[]) ?? []).map((c) => [c.id, c]));
}

async function fake(options: Parameters<typeof startFakeOAuth>[0]) {
  const f = await startFakeOAuth(options);
  fakes.push(f);
  return f;
}

describe("tokenkeeper doctor", () => {
  it("passes every check against the test bed, and changes nothing there", async () => {
    const r = await cli.run(["doctor", bed.mcpUrl]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const title of [
      "server reachable",
      "401 carries resource_metadata",
      "protected resource metadata valid",
      "authorization server metadata valid, issuer consistent",
      "PKCE S256 supported",
      "client registration possible",
      "refresh_token grant advertised",
      "device flow advertised",
      "revocation endpoint",
      "offline_access scope",
    ]) {
      assert.match(r.stdout, new RegExp(`PASS {2}${title.replace(/[()]/g, "\\$&")}`));
    }
    assert.match(r.stdout, /0 failed/);
    assert.equal(bed.as.counters.registrations, 0, "doctor registers nothing");
    assert.equal(bed.as.counters.tokenRequests, 0);
  });

  it("--json gives the checklist, the metadata URLs and the discovery trace", async () => {
    const r = await cli.run(["doctor", bed.mcpUrl, "--json"]);
    assert.equal(r.code, 0);
    const j = r.json!;
    assert.equal(j.ok, true);
    assert.equal(j.server, bed.mcpUrl);
    assert.equal(j.authorization_server, bed.issuer);
    assert.match(String(j.resource_metadata_url), /\/\.well-known\/oauth-protected-resource\/mcp$/);
    assert.ok((j.trace as unknown[]).length >= 3);
    assert.equal(checks(j).pkce!.status, "pass");
  });

  it("gives a fix for a server without dynamic registration, S256, refresh or revocation", async () => {
    const f = await fake({
      metadata: ({ registration_endpoint: _r, revocation_endpoint: _v, ...m }) => ({
        ...m,
        code_challenge_methods_supported: ["plain"],
        grant_types_supported: ["authorization_code"],
      }),
    });
    const r = await cli.run(["doctor", f.mcpUrl, "--json"]);
    assert.equal(r.code, 1);
    const c = checks(r.json);
    assert.equal(c.pkce!.status, "fail");
    assert.match(c.pkce!.fix!, /S256/);
    assert.equal(c.registration!.status, "warn");
    assert.equal(
      c.registration!.fix,
      "this server does not support dynamic client registration: register a client with the provider and use `login --client-id`",
    );
    assert.equal(c.refresh_token!.status, "warn");
    assert.equal(c.revocation!.status, "warn");
    assert.equal(c.device_flow!.status, "warn");
    assert.equal(f.counts.registrations, 0);
    const text = await cli.run(["doctor", f.mcpUrl]);
    assert.match(text.stdout, /FAIL {2}PKCE S256 supported: .*\n {8}fix: /);
  });

  it("reports an issuer mismatch and skips what depends on it", async () => {
    const f = await fake({ metadata: (m) => ({ ...m, issuer: "https://evil.example" }) });
    const r = await cli.run(["doctor", f.mcpUrl, "--json"]);
    assert.equal(r.code, 1);
    const c = checks(r.json);
    assert.equal(c.authorization_server!.status, "fail");
    assert.match(c.authorization_server!.detail, /states issuer https:\/\/evil\.example/);
    assert.match(c.authorization_server!.fix!, /RFC 8414 §3.3/);
    assert.equal(c.pkce!.status, "skip");
  });

  it("warns when the 401 lacks resource_metadata but the well-known URI works", async () => {
    const f = await fake({ challenge: () => 'Bearer realm="mcp"' });
    const r = await cli.run(["doctor", f.mcpUrl, "--json"]);
    const c = checks(r.json);
    assert.equal(c.challenge!.status, "warn");
    assert.match(c.challenge!.fix!, /RFC 9728 §5\.1/);
    assert.equal(c.resource_metadata!.status, "pass");
    assert.equal(r.code, 0);
  });

  it("a server that lets initialize through but publishes metadata: a warning, and the checks go on", async () => {
    const f = await fake({
      mcp: (req) => (req.method === "POST" ? { json: { jsonrpc: "2.0", id: 0, result: {} } } : undefined),
    });
    const r = await cli.run(["doctor", f.mcpUrl, "--json"]);
    const c = checks(r.json);
    assert.equal(c.challenge!.status, "warn");
    assert.equal(c.resource_metadata!.status, "pass");
    assert.equal(c.authorization_server!.status, "pass");
    assert.equal(r.code, 0);
  });

  it("a 2025-03-26 server (no protected resource metadata): warnings, and what login will use", async () => {
    const withMetadata = await fake({ prmAt: "none" });
    let c = checks((await cli.run(["doctor", withMetadata.mcpUrl, "--json"])).json);
    assert.equal(c.resource_metadata!.status, "warn");
    assert.match(c.resource_metadata!.detail, /2025-03-26/);
    assert.equal(c.authorization_server!.status, "pass");
    assert.equal(c.pkce!.status, "pass");

    const bare = await fake({ prmAt: "none", metadataAt: "none" });
    const r = await cli.run(["doctor", bare.mcpUrl, "--json"]);
    c = checks(r.json);
    assert.equal(c.authorization_server!.status, "warn");
    assert.match(c.authorization_server!.detail, /\/authorize, \/token and \/register/);
    assert.equal(r.code, 0, "login works against it: nothing failed");
  });

  it("reports a resource mismatch with its fix", async () => {
    const f = await fake({ prm: (d) => ({ ...d, resource: "https://other.example/mcp" }) });
    const c = checks((await cli.run(["doctor", f.mcpUrl, "--json"])).json);
    assert.equal(c.resource_metadata!.status, "fail");
    assert.match(c.resource_metadata!.fix!, /RFC 9728 §3\.3/);
  });

  it("reports an unreachable server and skips the rest", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const r = await cli.run(["doctor", `http://127.0.0.1:${port}/mcp`, "--json"]);
    assert.equal(r.code, 1);
    const c = checks(r.json);
    assert.equal(c.reachable!.status, "fail");
    assert.match(c.reachable!.fix!, /network/);
    assert.equal(c.iss!.status, "skip");
  });

  it("refuses an http URL that is not loopback", async () => {
    const r = await cli.run(["doctor", "http://mcp.example.test/mcp", "--json"]);
    assert.equal(r.code, 1);
    assert.match(checks(r.json).reachable!.detail, /not HTTPS/);
  });
});
