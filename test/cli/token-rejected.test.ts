/**
 * "This token was rejected": a script (`tokenkeeper token NAME --rejected`, the refused token on
 * stdin) or a `run` child (the same command, or POST /v1/token/NAME/rejected on the run's
 * endpoint) reports a 401 and gets a newer token. Whatever the number of reporters, the
 * authorization server sees exactly one refresh for one refused token, and none for a token the
 * store already replaced (the same path as the proxy's 401 handling).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { TokenManager } from "../../src/manager/token-manager.js";
import { RUN_SECRET_HEADER, startTokenEndpoint } from "../../src/surfaces/token-endpoint-server.js";
import { mcpAccepts } from "../support/mcp-accepts.js";
import { runCliInProcess } from "../support/run-cli.js";
import { cliCommand, type Harness, startHarness, waitFor } from "./unattended-harness.js";

const REPORTERS = 8;

describe("tokenkeeper token --rejected", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ accessTokenTtl: 300 });
  });
  after(async () => {
    await h.close();
  });

  const refreshes = () => h.bed.as.counters.refreshGrantsSucceeded;
  const current = async (name: string) => (await h.store.get(name))!.record.tokens!.accessToken.reveal();
  /** `token NAME --rejected` in-process, the refused token on stdin; its own store and manager each time. */
  const report = (name: string, refused: string, env: NodeJS.ProcessEnv = {}) =>
    runCliInProcess(["token", name, "--rejected"], {
      env: { ...h.env, ...env },
      stdin: Readable.from([`${refused}\n`]),
    });

  it(`${REPORTERS} processes report the same refused token: one refresh, one new token for all`, async () => {
    await h.connect("script");
    const refused = await current("script");
    const before = refreshes();
    const results = await Promise.all(Array.from({ length: REPORTERS }, () => report("script", refused)));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(refreshes() - before, 1, "refresh grants at the authorization server");
    const renewed = new Set(results.map((r) => r.stdout.trim()));
    assert.equal(renewed.size, 1, "every reporter got the same new token");
    const [token] = [...renewed];
    assert.notEqual(token, refused);
    assert.equal(token, await current("script"));
    assert.ok(await mcpAccepts(h.bed.mcpUrl, token!));
    assert.equal(h.bed.as.counters.refreshTokenReuse, 0);

    // A late report of the same token: the store moved on, nothing is refreshed.
    const late = await report("script", refused);
    assert.equal(late.code, 0, late.stderr);
    assert.equal(late.stdout.trim(), token);
    assert.equal(refreshes() - before, 1);
  });

  it("needs the token on stdin, never as an argument; only `token` takes the flag", async () => {
    const none = await runCliInProcess(["token", "script", "--rejected"], {
      env: h.env,
      stdin: Readable.from([]),
    });
    assert.equal(none.code, 78);
    assert.match(none.stderr, /--rejected got no token on stdin/);
    assert.equal(none.stdout, "");
    const garbage = await report("script", "not a token");
    assert.equal(garbage.code, 78);
    assert.doesNotMatch(garbage.stderr, /not a token/, "stdin is never echoed");
    assert.equal((await h.cli(["token", "script", "--rejected=abc"])).code, 78);
    // A parent that never closes the pipe does not hang the job: 5 s, then exit 78.
    const clock = new ManualClock();
    const open = new PassThrough();
    const hanging = runCliInProcess(["token", "script", "--rejected"], { env: h.env, stdin: open, clock });
    await waitFor(() => clock.pendingSleeps > 0, 10_000, "the stdin read to start its timer");
    await clock.advance(5_000);
    const hung = await hanging;
    assert.equal(hung.code, 78);
    assert.match(hung.stderr, /stdin did not end within 5s/);
    assert.equal((await h.cli(["headers", "script", "--rejected"])).code, 78);
  });

  it(`inside a run: ${REPORTERS} reports through the run's endpoint, one refresh; a stale report none`, async () => {
    await h.connect("inrun");
    const manager = new TokenManager({ store: h.store });
    const endpoint = await startTokenEndpoint({ manager, connectors: ["inrun"] });
    try {
      const refused = (await manager.getAccessToken("inrun")).token.reveal();
      const before = refreshes();
      // Half through `tokenkeeper token --rejected` (as a run child would), half as a raw POST.
      const viaCli = Array.from({ length: REPORTERS / 2 }, () =>
        report("inrun", refused, { ...endpoint.env(), TOKENKEEPER_STORE: "bogus://never-opened" }).then(
          (r) => {
            assert.equal(r.code, 0, r.stderr);
            return r.stdout.trim();
          },
        ),
      );
      const viaPost = Array.from({ length: REPORTERS / 2 }, async () => {
        const res = await fetch(`${endpoint.url}/v1/token/inrun/rejected`, {
          method: "POST",
          headers: { [RUN_SECRET_HEADER]: endpoint.secret, "content-type": "application/json" },
          body: JSON.stringify({ access_token: refused }),
        });
        assert.equal(res.status, 200);
        return ((await res.json()) as { access_token: string }).access_token;
      });
      const tokens = new Set(await Promise.all([...viaCli, ...viaPost]));
      assert.equal(refreshes() - before, 1, "refresh grants at the authorization server");
      assert.equal(tokens.size, 1);
      const [token] = [...tokens];
      assert.notEqual(token, refused);
      assert.ok(await mcpAccepts(h.bed.mcpUrl, token!));

      const late = await report("inrun", refused, endpoint.env());
      assert.equal(late.stdout.trim(), token);
      assert.equal(refreshes() - before, 1, "the run already moved on: no refresh");

      const bad = await fetch(`${endpoint.url}/v1/token/inrun/rejected`, {
        method: "POST",
        headers: { [RUN_SECRET_HEADER]: endpoint.secret },
        body: "{}",
      });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, "invalid_config");
      const wrongMethod = await fetch(`${endpoint.url}/v1/token/inrun/rejected`, {
        headers: { [RUN_SECRET_HEADER]: endpoint.secret },
      });
      assert.equal(wrongMethod.status, 404);
      await wrongMethod.body?.cancel();
    } finally {
      await endpoint.close();
      await manager.close();
    }
  });

  it("a real `tokenkeeper run` child: 4 concurrent `token --rejected` processes, one refresh", async () => {
    await h.connect("child");
    // Refreshed just now, so the run's preflight proves the grant without another refresh.
    const warm = new TokenManager({ store: h.store });
    await warm.refreshNow("child");
    await warm.close();
    const before = refreshes();
    const tk = cliCommand()
      .map((part) => `'${part}'`)
      .join(" ");
    // The tokens the child prints are its stdout by design: kept out of the harness's home
    // (whose files the suite's secret scan reads) and removed here.
    const out = mkdtempSync(join(tmpdir(), "tk-rejected-"));
    const script = [
      `T=$(${tk} token child) || exit 11`,
      `printf '%s' "$T" > '${join(out, "refused")}'`,
      ...[1, 2, 3, 4].map(
        (i) =>
          `(printf '%s' "$T" | ${tk} token child --rejected > '${join(out, `renewed.${i}`)}' || echo $? > '${join(out, `failed.${i}`)}') &`,
      ),
      "wait",
    ].join("\n");
    let refused: string;
    let renewed: Set<string>;
    try {
      const r = await h.cli(["run", "--connector", "child", "--", "/bin/sh", "-c", script]);
      assert.equal(r.code, 0, r.stderr);
      refused = readFileSync(join(out, "refused"), "utf8");
      renewed = new Set([1, 2, 3, 4].map((i) => readFileSync(join(out, `renewed.${i}`), "utf8").trim()));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    assert.equal(refreshes() - before, 1, "refresh grants at the authorization server");
    assert.equal(renewed.size, 1);
    assert.ok(!renewed.has(refused));
    assert.ok(await mcpAccepts(h.bed.mcpUrl, [...renewed][0]!));
  });
});
