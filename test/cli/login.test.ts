/**
 * `tokenkeeper login` end to end: the real CLI entry point, a file store in a temp
 * TOKENKEEPER_HOME, the oidc-provider test bed, and a $BROWSER that is a separate process
 * following the redirects through the auto-consent.
 */
import assert from "node:assert/strict";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { ConnectorRecord } from "../../src/core/record.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type FakeOAuth, startFakeOAuth } from "../oauth/stub-servers.js";
import { AGENT, type Cli, makeCli } from "./auth-cli-harness.js";

let bed: TestBed;
let cli: Cli;

before(async () => {
  bed = await startTestBed();
});
after(async () => {
  await bed.close();
});
beforeEach(async () => {
  cli = await makeCli();
  bed.as.resetCounters();
});
afterEach(async () => {
  await cli.cleanup();
});

async function stored(name: string): Promise<ConnectorRecord | undefined> {
  const store = await cli.openStore();
  try {
    return (await store.get(name))?.record;
  } finally {
    await store.close();
  }
}

function assertNoSecrets(record: ConnectorRecord, ...outputs: string[]) {
  const secrets = [
    record.tokens?.accessToken.reveal(),
    record.tokens?.refreshToken?.reveal(),
    record.client.clientSecret?.reveal(),
  ].filter(Boolean) as string[];
  for (const out of outputs) {
    for (const s of secrets) assert.ok(!out.includes(s), "a secret was printed");
    assert.doesNotMatch(out, /code_verifier|[?&]code=/);
  }
}

describe("tokenkeeper login", () => {
  it("completes the browser flow through $BROWSER and prints the summary and next commands", async () => {
    const r = await cli.run(["login", bed.mcpUrl, "--name", "bed"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Open this URL in a browser/);
    assert.match(r.stderr, new RegExp(`${bed.issuer.replace(/[.]/g, "\\.")}/auth\\?response_type=code`));
    assert.match(r.stderr, /Opened a browser/);
    assert.match(r.stdout, /Logged in: connector "bed" is ready/);
    assert.match(r.stdout, /issuer\s+http:\/\/127\.0\.0\.1/);
    assert.match(r.stdout, /client\s+registered dynamically/);
    // A JWT's exp is in whole seconds, and the earliest expiry wins (up to a second under 1h).
    assert.match(r.stdout, /access token\s+valid for (1h|59m5\ds)/);
    assert.match(r.stdout, /refresh token\s+issued; rotation unknown until the first refresh/);
    assert.match(r.stdout, /Next:\n {2}tokenkeeper status bed/);
    const record = await stored("bed");
    assert.ok(record?.tokens?.refreshToken);
    assertNoSecrets(record!, r.stdout, r.stderr);
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 1);
  });

  it("prints a JSON summary with --json, without secrets", async () => {
    const r = await cli.run(["login", bed.mcpUrl, "--name", "j", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json!;
    assert.equal(j.ok, true);
    assert.equal(j.connector, "j");
    assert.equal(j.server, bed.mcpUrl);
    assert.equal(j.issuer, bed.issuer);
    assert.equal(j.client_kind, "dynamic");
    assert.equal(j.refresh_token_issued, true);
    const lifetime = j.access_token_lifetime_seconds as number;
    assert.ok(lifetime >= 3_598 && lifetime <= 3_600, `lifetime ${lifetime} s`);
    // One JSON dialect: snake_case keys, ISO-8601 UTC times.
    assert.match(j.access_token_expires_at as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    for (const key of Object.keys(j)) assert.match(key, /^[a-z0-9_]+$/, key);
    assert.ok(Array.isArray(j.next));
    assertNoSecrets((await stored("j"))!, r.stdout, r.stderr);
  });

  it("with --device, shows the code and finishes when someone approves it", async () => {
    let approving = false;
    const r = await cli.run(
      ["login", bed.mcpUrl, "--device", "--name", "dev"],
      {},
      {
        onStderr: (text) => {
          const code = /enter the code:\s+(\S+)/.exec(text)?.[1];
          if (code && !approving) {
            approving = true;
            setTimeout(() => void bed.as.approveDeviceCode(code), 20);
          }
        },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /To authorize Tokenkeeper, visit: +http:\/\/127\.0\.0\.1:\d+\/device/);
    assert.match(r.stdout, /grant\s+device_code/);
    assert.equal((await stored("dev"))?.grant, "device_code");
  });

  it("with --client-credentials and a pre-registered client, takes the secret from the environment", async () => {
    const client = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    });
    const r = await cli.run(
      ["login", bed.mcpUrl, "--client-credentials", "--client-id", client.client_id, "--name", "m2m"],
      {
        TOKENKEEPER_CLIENT_SECRET: client.client_secret!,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /refresh token\s+none needed: new tokens come from the client credentials/);
    const record = (await stored("m2m"))!;
    assert.equal(record.client.kind, "preregistered");
    assert.equal(
      record.client.clientSecret?.reveal(),
      client.client_secret,
      "stored with the connector, protected like a token",
    );
    assertNoSecrets(record, r.stdout, r.stderr);
  });

  it("asks for a pre-registered client's secret on a terminal, without echo", async () => {
    const client = await bed.as.registerClient({
      application_type: "native",
      token_endpoint_auth_method: "client_secret_basic",
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: ["http://127.0.0.1/callback"],
    });
    const r = await cli.run(
      ["login", bed.mcpUrl, "--client-id", client.client_id, "--name", "typed"],
      {},
      { interactive: true, typed: `${client.client_secret}\r` },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`Client secret for ${client.client_id}`));
    assert.ok(!r.stderr.includes(client.client_secret!), "the secret is not echoed");
    const record = (await stored("typed"))!;
    assert.equal(record.client.kind, "preregistered");
    assert.equal(record.client.clientSecret?.reveal(), client.client_secret);
  });

  it("logging in again keeps the connector's flow and its pre-registered client", async () => {
    const client = await bed.as.registerClient({
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    });
    const first = await cli.run(
      ["login", bed.mcpUrl, "--client-credentials", "--client-id", client.client_id, "--name", "keep"],
      {
        TOKENKEEPER_CLIENT_SECRET: client.client_secret!,
      },
    );
    assert.equal(first.code, 0, first.stderr);
    const again = await cli.run(["login", bed.mcpUrl, "--name", "keep"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /Logged in again/);
    assert.match(again.stdout, /grant\s+client_credentials/);
    assert.match(again.stderr, /Reusing the pre-registered client/);
    assert.equal(bed.as.counters.registrations, 0);
  });

  it("says loudly when no refresh token was issued, and how long until a human is needed", async () => {
    const fake = await startFakeOAuth({
      token: () => ({ json: { access_token: "at-short-lived", token_type: "Bearer", expires_in: 900 } }),
    });
    try {
      const r = await cli.run(["login", fake.mcpUrl, "--name", "short"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /WARNING: NO REFRESH TOKEN was issued: a human must log in again in 15m/);
      assert.match(r.stdout, /refresh token\s+NONE/);
      assert.match(r.stdout, /human needed\s+by \d{4}-/);
      assert.ok(!r.stdout.includes("at-short-lived") && !r.stderr.includes("at-short-lived"));
    } finally {
      await fake.close();
    }
  });

  it("never takes a client secret on the command line, and names a missing secret variable", async () => {
    const r = await cli.run(["login", bed.mcpUrl, "--client-id", "x", "--client-secret", "hunter2"]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /never taken on the command line/);
    assert.doesNotMatch(r.stderr, /hunter2/);
    const missing = await cli.run([
      "login",
      bed.mcpUrl,
      "--client-id",
      "x",
      "--client-secret-env",
      "NOPE_SECRET",
    ]);
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /NOPE_SECRET/);
  });

  it("prints the URL and a hint without opening anything with --no-browser, and times out clearly", async () => {
    const r = await cli.run(["login", bed.mcpUrl, "--no-browser", "--timeout", "1s", "--callback-port", "0"]);
    assert.equal(r.code, 64, "port 0 is not a port");
    const t = await cli.run(["login", bed.mcpUrl, "--no-browser", "--timeout", "1s", "--name", "slow"]);
    assert.equal(t.code, 78);
    assert.match(t.stderr, /\/auth\?response_type=code/);
    assert.match(t.stderr, /ssh -L \d+:127\.0\.0\.1:\d+/);
    assert.match(
      t.stderr,
      /login_failed: no authorization response reached http:\/\/127\.0\.0\.1:\d+\/callback within 1s/,
    );
    assert.equal(bed.as.counters.grants.authorization_code, 0);
    assert.equal(await stored("slow"), undefined);
  });

  it("usage errors exit 64", async () => {
    assert.equal((await cli.run(["login"])).code, 64);
    assert.equal((await cli.run(["login", bed.mcpUrl, "--device", "--client-credentials"])).code, 64);
    assert.equal((await cli.run(["login", bed.mcpUrl, "--timeout", "soon"])).code, 64);
    assert.equal((await cli.run(["login", bed.mcpUrl, "--bogus"])).code, 64);
    // A private key belongs to a registered client, and replaces its secret.
    assert.equal((await cli.run(["login", bed.mcpUrl, "--private-key-file", "k.pem"])).code, 64);
    assert.equal(
      (
        await cli.run([
          "login",
          bed.mcpUrl,
          "--client-id",
          "c",
          "--private-key-file",
          "k.pem",
          "--client-secret-env",
          "S",
        ])
      ).code,
      64,
    );
  });
});

describe("tokenkeeper login against hostile servers", () => {
  let fake: FakeOAuth | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it("the browser it starts gets no client secret, store key or secret variable of ours", async () => {
    const envOut = join(cli.home, "browser-env.txt");
    const script = join(cli.home, "browser.sh");
    // A $BROWSER that records its environment, then completes the authorization like a browser.
    writeFileSync(
      script,
      `#!/bin/sh\nenv > '${envOut}'\nexec "${process.execPath}" --import tsx "${AGENT}" "$1"\n`,
    );
    chmodSync(script, 0o755);
    const r = await cli.run(["login", bed.mcpUrl, "--name", "envcheck"], {
      BROWSER: script,
      KEEP_ME: "yes",
      TOKENKEEPER_CLIENT_SECRET: "client-secret-not-for-the-browser",
      TOKENKEEPER_KEY: "key-not-for-the-browser",
    });
    assert.equal(r.code, 0, r.stderr);
    const seen = readFileSync(envOut, "utf8");
    assert.match(seen, /^KEEP_ME=yes$/m);
    assert.doesNotMatch(seen, /^TOKENKEEPER_(CLIENT_SECRET|KEY)=/m);
    assert.doesNotMatch(seen, /not-for-the-browser/);
  });

  it("an issuer mismatch exits 76 with the reason, and stores nothing", async () => {
    fake = await startFakeOAuth({ metadata: (m) => ({ ...m, issuer: "https://evil.example" }) });
    const r = await cli.run(["login", fake.mcpUrl, "--name", "evil", "--json"]);
    assert.equal(r.code, 76);
    assert.match(r.stderr, /protocol_error: .*states issuer https:\/\/evil\.example/);
    assert.equal((r.json!.error as { problem?: string }).problem, "issuer_mismatch");
    assert.equal(await stored("evil"), undefined);
  });

  it("a callback with the wrong state, through a real browser process, is ignored: 78 at the timeout, nothing stored", async () => {
    const r = await cli.run(["login", bed.mcpUrl, "--name", "csrf", "--timeout", "3s"], {
      BROWSER_AGENT_TAMPER: "state",
    });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /1 request without this login's state was ignored/);
    assert.equal(await stored("csrf"), undefined);
  });
});
