/**
 * `proxy NAME --reauth browser`, for GUI clients without a terminal: when the grant dies, the
 * browser sign-in opens once for every proxy of the connector, calls meanwhile are answered with
 * reason `sign_in_open`, and both proxies resume without a restart when the person has signed in.
 * Two real proxy processes on one store, the oidc-provider test bed, and a $BROWSER that follows
 * the authorization URL through the bed's consent (after a pause, like a person reading the page).
 * @slow: the test runner starts it first so it overlaps the rest of the suite.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { AGENT } from "../cli/auth-cli-harness.js";
import { runCliInProcess } from "../support/run-cli.js";
import { type Home, homeWithConnector, type ProxyProcess, startProxy, textOf } from "./proxy-harness.js";

const REAUTH = -32030;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("tokenkeeper proxy --reauth browser", () => {
  let bed: TestBed;
  let home: Home;
  before(async () => {
    // Short tokens: both proxies find the dead grant within seconds.
    bed = await startTestBed({ accessTokenTtl: 4 });
  });
  after(async () => {
    await home?.cleanup();
    await bed.close();
  });

  it("two proxies of one connector: one sign-in page, typed answers meanwhile, both resume without a restart", async () => {
    home = await homeWithConnector(bed, "gui");
    const agentLog = join(home.dir, "browser-agent.jsonl");
    // The person takes a few seconds on the page: long enough for both proxies to need them.
    const browser = join(home.dir, "slow-browser.sh");
    await writeFile(browser, `#!/bin/sh\nsleep 8\nexec "${process.execPath}" --import tsx "${AGENT}" "$1"\n`);
    await chmod(browser, 0o700);
    const env = { BROWSER: browser, BROWSER_AGENT_LOG: agentLog };
    const proxies: ProxyProcess[] = [];
    try {
      for (let i = 0; i < 2; i++)
        proxies.push(await startProxy(home, "gui", { args: ["--reauth", "browser"], env }));
      for (const p of proxies)
        assert.equal(
          textOf(await p.client.callTool({ name: "echo", arguments: { text: "before" } })),
          "before",
        );

      bed.as.resetCounters();
      await bed.as.revokeAllGrants();
      // Call both until each has answered "the sign-in page is open".
      const signInData: { action: string; reason: string }[][] = [[], []];
      const deadline = Date.now() + 30_000;
      const named = () => signInData.some((d) => d.some((x) => x.action.includes("/auth?")));
      while (Date.now() < deadline && (signInData.some((d) => d.length === 0) || !named())) {
        for (const [i, p] of proxies.entries()) {
          try {
            await p.client.callTool({ name: "echo", arguments: { text: "during" } });
          } catch (error) {
            assert.ok(error instanceof McpError && error.code === REAUTH, String(error));
            const data = error.data as { reason: string; action: string; status: string };
            if (data.reason === "sign_in_open") signInData[i]!.push(data);
          }
        }
        await sleep(200);
      }
      assert.ok(
        signInData.every((d) => d.length > 0),
        `both proxies said a sign-in is open: ${signInData.map((d) => d.length)}`,
      );
      // One of them opened the page and names its URL; the other points at it.
      const actions = signInData.map((d) => d.map((x) => x.action).join("\n"));
      const withUrl = actions.filter((a) => /page opened in your browser \(https?:\/\/\S+\/auth\?/.test(a));
      const elsewhere = actions.filter((a) => /another Tokenkeeper proxy opened/.test(a));
      assert.equal(withUrl.length, 1, actions.join("\n"));
      assert.equal(elsewhere.length, 1, actions.join("\n"));

      // After the person signs in, both serve calls again, same processes, same clients.
      for (const p of proxies) {
        let answer: string | undefined;
        const until = Date.now() + 30_000;
        while (!answer && Date.now() < until) {
          try {
            answer = textOf(await p.client.callTool({ name: "echo", arguments: { text: "after" } }));
          } catch {
            await sleep(300);
          }
        }
        assert.equal(
          answer,
          "after",
          `${p.stderr()}\n${existsSync(agentLog) ? await readFile(agentLog, "utf8") : "(no browser run)"}`,
        );
      }
      // Exactly one login: one browser run, one code exchange. (One registration: the seeded
      // client's redirect is on port 9, which browsers refuse, so it cannot be reused.)
      const runs = (await readFile(agentLog, "utf8")).trim().split("\n");
      assert.equal(runs.length, 1, runs.join("\n"));
      assert.equal(bed.as.counters.grantsSucceeded.authorization_code, 1);
      assert.equal(bed.as.counters.registrations, 1);
      const logs = proxies.map((p) => p.stderr()).join("\n");
      assert.match(logs, /--reauth browser: signed in to "gui"/);
      assert.match(logs, /another proxy of "gui" has the sign-in page open/);
    } finally {
      for (const p of proxies) await p.close();
    }
    assert.ok(existsSync(agentLog));
  });

  it("is refused for --no-auth and for an unknown mode", async () => {
    const { spawnSync } = await import("node:child_process");
    const { REPO } = await import("./proxy-harness.js");
    const { nodeArgsFor } = await import("../support/child-entry.js");
    for (const args of [
      ["proxy", "https://mcp.example.com/mcp", "--no-auth", "--reauth", "browser"],
      ["proxy", "gui", "--reauth", "always"],
    ]) {
      const r = spawnSync(process.execPath, [...nodeArgsFor(join(REPO, "src", "cli", "bin.ts")), ...args], {
        cwd: REPO,
        env: { PATH: process.env.PATH, TOKENKEEPER_HOME: home.dir },
        encoding: "utf8",
        timeout: 30_000,
      });
      assert.equal(r.status, 64, r.stderr);
    }
    const env = { PATH: process.env.PATH, TOKENKEEPER_HOME: home.dir };
    // Never in the unattended commands: there it is not an option at all (78, a scheduler's code).
    for (const argv of [
      ["token", "gui", "--reauth", "browser"],
      ["ensure", "gui", "--reauth", "browser"],
      ["keepalive", "--once", "--reauth", "browser"],
      ["run", "--connector", "gui", "--reauth", "browser", "--", "true"],
    ]) {
      const r = await runCliInProcess(argv, { env });
      assert.equal(r.code, 78, `${argv.join(" ")}: ${r.stderr}`);
    }
    // The client's configuration carries it.
    const config = await runCliInProcess(
      ["proxy", "gui", "--print-config", "--reauth", "browser", "--json"],
      {
        env,
      },
    );
    assert.equal(config.code, 0, config.stderr);
    const args = JSON.parse(config.stdout).args as string[];
    assert.deepEqual(args.slice(args.indexOf("--reauth")), ["--reauth", "browser"]);
  });
});
