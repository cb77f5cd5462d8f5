import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import type { TokenkeeperError } from "../../src/core/errors.js";
import { type DevicePrompt, deviceLogin } from "../../src/oauth/device-login.js";
import type { FetchLike } from "../../src/oauth/http.js";
import { makeRecord } from "../support/fixtures.js";

const AS = "https://auth.example.test";

function record() {
  return makeRecord("dev", {
    grant: "device_code",
    tokens: null,
    scope: "mcp:tools",
    server: {
      mcpUrl: "https://mcp.example.test/mcp",
      resource: "https://mcp.example.test/mcp",
      issuer: AS,
      metadata: {
        issuer: AS,
        token_endpoint: `${AS}/token`,
        device_authorization_endpoint: `${AS}/device/auth`,
        grant_types_supported: ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
      },
    },
  });
}

type TokenReply = { error: string } | "ok";

/** An in-memory authorization server: the device endpoint, then a scripted token endpoint. */
function fakeServer(
  clock: ManualClock,
  script: TokenReply[],
  device: { interval?: number; expires_in?: number } = {},
) {
  const polls: { at: number; body: URLSearchParams }[] = [];
  let deviceBody: URLSearchParams | undefined;
  const fetch: FetchLike = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const body = new URLSearchParams(String(init?.body ?? ""));
    if (url === `${AS}/device/auth`) {
      deviceBody = body;
      return Response.json({
        device_code: "device-code-secret",
        user_code: "WXYZ-1234",
        verification_uri: `${AS}/device`,
        verification_uri_complete: `${AS}/device?user_code=WXYZ-1234`,
        expires_in: device.expires_in ?? 600,
        ...(device.interval !== undefined ? { interval: device.interval } : {}),
      });
    }
    polls.push({ at: clock.now(), body });
    const reply = script.shift() ?? { error: "authorization_pending" };
    if (reply === "ok") {
      return Response.json(
        { access_token: "at-device", token_type: "Bearer", expires_in: 3600, refresh_token: "rt-device" },
        { headers: { "cache-control": "no-store" } },
      );
    }
    return Response.json(reply, { status: 400 });
  };
  return { fetch, polls, deviceBody: () => deviceBody };
}

async function drive<T>(clock: ManualClock, promise: Promise<T>, stepMs = 500, maxSteps = 2000): Promise<T> {
  let settled = false;
  const tracked = promise.finally(() => {
    settled = true;
  });
  tracked.catch(() => {});
  for (let i = 0; i < maxSteps && !settled; i++) await clock.advance(stepMs);
  return tracked;
}

describe("device flow (RFC 8628) with an injected clock", () => {
  it("shows the code, polls at the interval, and returns tokens on approval", async () => {
    const clock = new ManualClock();
    const server = fakeServer(
      clock,
      [{ error: "authorization_pending" }, { error: "authorization_pending" }, "ok"],
      { interval: 3 },
    );
    const prompts: DevicePrompt[] = [];
    const start = clock.now();
    const outcome = await drive(
      clock,
      deviceLogin({ record: record(), present: (p) => void prompts.push(p) }, { clock, fetch: server.fetch }),
    );
    assert.equal(outcome.tokens.accessToken.reveal(), "at-device");
    assert.equal(outcome.tokens.refreshToken?.reveal(), "rt-device");
    assert.deepEqual(prompts[0], {
      userCode: "WXYZ-1234",
      verificationUri: `${AS}/device`,
      verificationUriComplete: `${AS}/device?user_code=WXYZ-1234`,
      expiresInMs: 600_000,
    });
    assert.deepEqual(
      server.polls.map((p) => p.at - start),
      [3000, 6000, 9000],
    );
    assert.equal(server.deviceBody()?.get("resource"), "https://mcp.example.test/mcp");
    assert.equal(server.deviceBody()?.get("scope"), "mcp:tools");
    assert.equal(server.polls[0]!.body.get("device_code"), "device-code-secret");
    assert.equal(server.polls[0]!.body.get("resource"), "https://mcp.example.test/mcp");
  });

  it("uses 5 s when the server gives no interval, and adds 5 s on every slow_down", async () => {
    const clock = new ManualClock();
    const server = fakeServer(clock, [
      { error: "slow_down" },
      { error: "authorization_pending" },
      { error: "slow_down" },
      "ok",
    ]);
    const start = clock.now();
    await drive(clock, deviceLogin({ record: record(), present: () => {} }, { clock, fetch: server.fetch }));
    const gaps = server.polls.map((p, i) => p.at - (i === 0 ? start : server.polls[i - 1]!.at));
    assert.deepEqual(gaps, [5000, 10_000, 10_000, 15_000]);
  });

  it("explains expired_token and access_denied, and stops polling", async () => {
    for (const [error, problem, text] of [
      ["expired_token", "expired_token", /expired before anyone approved it/],
      ["access_denied", "access_denied", /denied/],
    ] as const) {
      const clock = new ManualClock();
      const server = fakeServer(clock, [{ error: "authorization_pending" }, { error }], { interval: 1 });
      await assert.rejects(
        drive(clock, deviceLogin({ record: record(), present: () => {} }, { clock, fetch: server.fetch })),
        (e: TokenkeeperError) => {
          assert.equal(e.code, "login_failed");
          assert.equal(e.fields.problem, problem);
          assert.match(e.message, text);
          assert.doesNotMatch(e.message, /device-code-secret/);
          return true;
        },
      );
      assert.equal(server.polls.length, 2);
    }
  });

  it("gives up when the code's lifetime runs out without an answer", async () => {
    const clock = new ManualClock();
    const server = fakeServer(clock, [], { interval: 5, expires_in: 20 });
    await assert.rejects(
      drive(clock, deviceLogin({ record: record(), present: () => {} }, { clock, fetch: server.fetch })),
      (e: TokenkeeperError) => e.fields.problem === "expired_token",
    );
    assert.ok(server.polls.length <= 4, `polled ${server.polls.length} times in 20 s at a 5 s interval`);
  });

  it("stops at --timeout before the code expires, and on cancel", async () => {
    const clock = new ManualClock();
    const server = fakeServer(clock, [], { interval: 1 });
    await assert.rejects(
      drive(
        clock,
        deviceLogin({ record: record(), present: () => {}, timeoutMs: 4000 }, { clock, fetch: server.fetch }),
      ),
      (e: TokenkeeperError) => e.fields.problem === "device_timeout",
    );
    const clock2 = new ManualClock();
    const controller = new AbortController();
    const server2 = fakeServer(clock2, [], { interval: 1 });
    const pending = deviceLogin(
      { record: record(), present: () => controller.abort() },
      { clock: clock2, fetch: server2.fetch, signal: controller.signal },
    );
    await assert.rejects(drive(clock2, pending), (e: TokenkeeperError) => e.code === "cancelled");
  });

  it("refuses a server without a device endpoint", async () => {
    const clock = new ManualClock();
    const r = record();
    delete (r.server.metadata as Record<string, unknown>).device_authorization_endpoint;
    await assert.rejects(
      deviceLogin({ record: r, present: () => {} }, { clock }),
      (e: TokenkeeperError) => e.fields.problem === "device_flow_unsupported",
    );
  });
});
