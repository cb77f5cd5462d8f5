/**
 * Logging in again while other processes write the connector: the person's authorization is
 * never thrown away. During a real browser login against the oidc-provider test bed, another
 * process (the real CLI) refreshes the old grant and this one changes a setting and marks state;
 * the login's final write merges with that record under the refresh lock instead of failing with
 * `conflict`, and its new grant is the one stored (no orphan grant at the server).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { systemClock } from "../../src/core/clock.js";
import type { ConnectorRecord } from "../../src/core/record.js";
import { type LoginDeps, login } from "../../src/manager/login.js";
import { saveLogin } from "../../src/manager/login-save.js";
import { mergeLogin } from "../../src/manager/transitions.js";
import { refreshGrant } from "../../src/oauth/token-endpoint.js";
import { FileStore } from "../../src/store/file-store.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { updateRecord } from "../../src/store/update.js";
import { startTestBed, type TestBed } from "../bed/index.js";
import { followAuthorization } from "../support/browser-agent.js";
import { nodeArgsFor } from "../support/child-entry.js";
import { makeRecord } from "../support/fixtures.js";
import { mcpAccepts } from "../support/mcp-accepts.js";

const REFRESH_ONCE = fileURLToPath(new URL("./fixtures/refresh-once.ts", import.meta.url));

/** Another process refreshing `name` in the file store at `dir`; resolves with its exit code. */
function refreshInAnotherProcess(dir: string, name: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...nodeArgsFor(REFRESH_ONCE), dir, name],
      { env: { PATH: process.env.PATH }, timeout: 60_000 },
      (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
    );
  });
}

describe("re-login merges with concurrent writes", () => {
  let bed: TestBed;
  let dir: string;
  let store: FileStore;
  before(async () => {
    bed = await startTestBed({ accessTokenTtl: 60 });
    dir = await mkdtemp(join(tmpdir(), "tk-relogin-"));
    store = new FileStore({ dir: join(dir, "state") });
  });
  after(async () => {
    await bed.close();
    await rm(dir, { recursive: true, force: true });
  });

  const deps = (presentUrl: LoginDeps["presentUrl"]): LoginDeps => ({
    store,
    clock: systemClock,
    presentUrl,
    presentDeviceCode: () => {},
  });

  it("another process refreshes and marks state while the person is in the browser: the login still lands", async () => {
    const request = { mcpUrl: bed.mcpUrl, name: "busy", flow: "browser" as const };
    const first = await login(
      request,
      deps((url) => followAuthorization(url).then(() => {})),
    );
    assert.equal(first.version, 1);

    const codesBefore = bed.as.counters.grantsSucceeded.authorization_code;
    let concurrent: { code: number; stderr: string } | undefined;
    const second = await login(
      request,
      deps(async (url) => {
        // While the person is on the consent page: a refresh of the old grant by another process
        // (a keepalive, a job's token request) ...
        concurrent = await refreshInAnotherProcess(store.dir, "busy");
        // ... and a setting changed and state marked by a third writer.
        await updateRecord(store, "busy", (r) => ({
          ...r,
          settings: { ...r.settings, notifyCommand: "true" },
          state: { ...r.state, notifiedAt: 1 },
        }));
        await followAuthorization(url);
      }),
    );
    assert.equal(concurrent?.code, 0, concurrent?.stderr);
    const stored = (await store.get("busy"))!;
    assert.equal(stored.version, 4, "login wrote on top of the two concurrent writes");
    assert.equal(second.version, 4);
    // The new grant is the one stored, and it works.
    assert.equal(bed.as.counters.grantsSucceeded.authorization_code, codesBefore + 1);
    assert.ok(stored.record.tokens!.accessToken.equals(second.record.tokens!.accessToken));
    assert.ok(await mcpAccepts(bed.mcpUrl, stored.record.tokens!.accessToken.reveal()));
    // Its refresh token is live at the server: the stored grant is not an orphan's sibling.
    assert.ok((await refreshGrant(stored.record, { clock: systemClock })).tokens.refreshToken);
    // What others wrote meanwhile is kept where it is not the login's to decide.
    assert.equal(stored.record.settings.notifyCommand, "true");
    assert.equal(stored.record.state.refreshCount, 1, "the other process's refresh is history");
    assert.equal(stored.record.state.notifiedAt, undefined, "a mark about the old grant is over");
    assert.equal(stored.record.state.health, "ok");
    assert.equal(stored.record.createdAt, first.record.createdAt);
  });

  it("merge rules: the login's tokens, client and server win; settings, counters and creation are kept", () => {
    const now = Date.now();
    const current: ConnectorRecord = {
      ...makeRecord("m", { settings: { refreshAheadMs: 1 } }, now - 10_000),
      state: {
        health: "reauth_required",
        refreshCount: 9,
        rotationCount: 4,
        clockSkewMs: 250,
        clockSkewMeasuredAt: now - 5_000,
        reauth: { reason: "invalid_grant", since: now - 1_000, action: "login" },
        notifiedAt: now - 900,
      },
    };
    const fresh: ConnectorRecord = {
      ...makeRecord("m", {}, now),
      state: { health: "ok", refreshCount: 0, rotationCount: 0 },
    };
    const merged = mergeLogin(fresh, current);
    assert.equal(merged.tokens, fresh.tokens);
    assert.equal(merged.client, fresh.client);
    assert.equal(merged.server, fresh.server);
    assert.deepEqual(merged.settings, { refreshAheadMs: 1 });
    assert.equal(merged.createdAt, current.createdAt);
    assert.deepEqual(merged.state, {
      health: "ok",
      refreshCount: 9,
      rotationCount: 4,
      clockSkewMs: 250,
      clockSkewMeasuredAt: now - 5_000,
    });
    assert.equal(mergeLogin(fresh, null), fresh);
  });

  it("a lock release that fails after the write does not turn the saved login into an error", async () => {
    const store = new MemoryStore();
    const original = store.lock.bind(store);
    store.lock = async (name, options) => {
      const lock = await original(name, options);
      return {
        name: lock.name,
        expiresAt: lock.expiresAt,
        held: () => lock.held(),
        remainingMs: () => lock.remainingMs(),
        release: () => Promise.reject(new Error("the store went away")),
      };
    };
    const fresh = makeRecord("r", {}, Date.now());
    const saved = await saveLogin(store, fresh, null, { clock: systemClock });
    assert.equal(saved.record.name, "r");
    assert.equal((await store.get("r"))?.version, saved.version);
  });
});
