/**
 * A hostile authorization server on loopback, and everything a user would see of it.
 *
 * The server is the configurable stub of test/oauth/stub-servers.ts (correct by default) with
 * hooks that bend one answer at a time: the code exchange, the refresh, the MCP server's own
 * responses. Tokenkeeper runs as the CLI (in-process, with the same env a cron job would have),
 * against a private file store, with an events log, a notification command and a webhook, so a
 * test can collect every output a secret could leak into: stdout and stderr of each command,
 * `status` (human and --json), the events log, the notification command's stdin and the webhook
 * bodies. `assertNoSecrets` scans all of it for the exact values the server issued or received.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { systemClock } from "../../src/core/clock.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { login } from "../../src/manager/login.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/types.js";
import { updateRecord } from "../../src/store/update.js";
import { AGENT_BROWSER } from "../cli/auth-cli-harness.js";
import { type CliResult, jsonLines, startWebhook } from "../cli/unattended-harness.js";
import {
  type FakeOAuth,
  type FakeOAuthOptions,
  type StubRequest,
  type StubResponse,
  startFakeOAuth,
} from "../oauth/stub-servers.js";
import { followAuthorization } from "../support/browser-agent.js";
import { runCliInProcess } from "../support/run-cli.js";
import { recordOutputFiles } from "../support/secret-scan.js";

/** How the server answers, changeable between commands. Undefined: the correct answer. */
export interface HostileBehaviour {
  /** The authorization-code exchange (login). */
  code?: (params: URLSearchParams, origin: string) => StubResponse | undefined;
  /** The refresh-token grant. */
  refresh?: (params: URLSearchParams, origin: string) => StubResponse | undefined;
  /** The revocation endpoint (logout --revoke). */
  revoke?: (params: URLSearchParams) => StubResponse | undefined;
  /** The MCP server, for requests that carry a token (others get the 401 challenge). */
  mcp?: (req: StubRequest) => StubResponse | undefined;
}

export interface Hostile {
  fake: FakeOAuth;
  on: HostileBehaviour;
  home: string;
  store: Store;
  env: NodeJS.ProcessEnv;
  /** Every result of every command run so far. */
  results: CliResult[];
  /** The CLI in-process with this env (events log, notification command and webhook configured). */
  cli(argv: string[]): Promise<CliResult>;
  /** `tokenkeeper login` through the CLI, with a browser agent process as $BROWSER. */
  cliLogin(name: string, ...extra: string[]): Promise<CliResult>;
  /** A login done in-process (quick), when the test is about what comes after. */
  loginDirect(name: string): Promise<ConnectorRecord>;
  /** Changes the stored record (e.g. to simulate what an older version or a store writer left). */
  patch(name: string, change: (r: ConnectorRecord) => ConnectorRecord): Promise<void>;
  /** Notifications as the command received them on stdin, one JSON object each. */
  notifications(): Promise<Record<string, unknown>[]>;
  webhookBodies: unknown[];
  /** Lines of the events log. */
  events(): Promise<Record<string, unknown>[]>;
  /** Everything a user or a monitor could read, as one text (runs `status` and `status --json`). */
  everything(): Promise<string>;
  /** Fails naming where, if any secret value the server issued or received appears anywhere. */
  assertNoSecrets(): Promise<void>;
  close(): Promise<void>;
}

export async function startHostile(options: FakeOAuthOptions = {}): Promise<Hostile> {
  const on: HostileBehaviour = {};
  let origin = "";
  const fake = await startFakeOAuth({
    ...options,
    token: (p) => {
      const grant = p.get("grant_type");
      const custom =
        grant === "refresh_token"
          ? on.refresh?.(p, origin)
          : grant === "authorization_code"
            ? on.code?.(p, origin)
            : undefined;
      return custom ?? options.token?.(p);
    },
    revoke: (p) => on.revoke?.(p) ?? options.revoke?.(p),
    // The hostile MCP hook answers requests that carry a token; the rest get the usual 401.
    mcp: (req, o) => (req.headers.authorization ? on.mcp?.(req) : undefined) ?? options.mcp?.(req, o),
  });
  origin = fake.origin;
  const home = await mkdtemp(join(tmpdir(), "tk-hostile-"));
  const eventsFile = join(home, "events.jsonl");
  const notifiedFile = join(home, "notified.jsonl");
  const webhook = await startWebhook();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    TOKENKEEPER_HOME: join(home, "state"),
    TOKENKEEPER_STORE: pathToFileURL(join(home, "state")).href,
    TOKENKEEPER_EVENTS: eventsFile,
    TOKENKEEPER_NOTIFY_COMMAND: `cat >> '${notifiedFile}'; echo >> '${notifiedFile}'`,
    TOKENKEEPER_NOTIFY_WEBHOOK: webhook.url,
    BROWSER: AGENT_BROWSER,
  };
  const store = await openStore(env.TOKENKEEPER_STORE, { env, clock: systemClock });
  const results: CliResult[] = [];
  const read = (file: string) => readFile(file, "utf8").catch(() => "");

  const hostile: Hostile = {
    fake,
    on,
    home,
    store,
    env,
    results,
    webhookBodies: webhook.bodies,
    async cli(argv) {
      const r = await runCliInProcess(argv, { env });
      const result = { ...r, lines: jsonLines(r.stdout) };
      results.push(result);
      return result;
    },
    cliLogin(name, ...extra) {
      return hostile.cli(["login", fake.mcpUrl, "--name", name, "--timeout", "60s", ...extra]);
    },
    async loginDirect(name) {
      const { record } = await login(
        { mcpUrl: fake.mcpUrl, name, flow: "browser" },
        {
          store,
          clock: systemClock,
          presentUrl: async (url) => {
            await followAuthorization(url);
          },
          presentDeviceCode: () => {},
        },
      );
      return record;
    },
    async patch(name, change) {
      await updateRecord(store, name, (r) => change(r));
    },
    async notifications() {
      return jsonLines(await read(notifiedFile));
    },
    async events() {
      return jsonLines(await read(eventsFile));
    },
    async everything() {
      const status = await runCliInProcess(["status"], { env });
      const statusJson = await runCliInProcess(["status", "--json"], { env });
      assert.equal(status.code, 0, `status must work whatever happened: ${status.stderr}`);
      assert.equal(statusJson.code, 0, `status --json must work: ${statusJson.stderr}`);
      return [
        ...results.flatMap((r) => [r.stdout, r.stderr]),
        status.stdout,
        status.stderr,
        statusJson.stdout,
        await read(eventsFile),
        await read(notifiedFile),
        JSON.stringify(webhook.bodies),
      ].join("\n");
    },
    async assertNoSecrets() {
      const text = await hostile.everything();
      const secrets = fake.secrets();
      assert.ok(secrets.length > 0, "the scan must have values to look for");
      for (const secret of secrets) {
        const at = text.indexOf(secret);
        assert.equal(
          at,
          -1,
          `a secret (${secret.length} chars) leaked: …${text.slice(Math.max(0, at - 120), at)}<SECRET>…`,
        );
      }
    },
    async close() {
      await store.close();
      await webhook.close();
      await fake.close();
      // The events log and notification dumps also go to the suite-wide secret scan.
      recordOutputFiles(home, ["state"]);
      await rm(home, { recursive: true, force: true });
    },
  };
  return hostile;
}
