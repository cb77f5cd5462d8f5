/**
 * A long session on short tokens: 10-second access tokens, a call every second for
 * TOKENKEEPER_LONG_TEST_SECONDS (default 40; `npm run test:soak`: 180). The proxy must refresh ahead so that no call
 * fails and none waits for a refresh.
 *
 * @long: the test runner runs it in a lane of its own, beside the rest of the suite.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startTestBed, type TestBed } from "../bed/index.js";
import { type Home, homeWithConnector, startProxy, textOf } from "./proxy-harness.js";

const SECONDS = Number(process.env.TOKENKEEPER_LONG_TEST_SECONDS ?? 40);
const TTL = 10;

describe(`tokenkeeper proxy over ${SECONDS} s of ${TTL}-second tokens`, () => {
  let bed: TestBed;
  let home: Home;
  before(async () => {
    bed = await startTestBed({ accessTokenTtl: TTL });
    home = await homeWithConnector(bed, "short");
  });
  after(async () => {
    await home.cleanup();
    await bed.close();
  });

  it("makes a call every second with zero errors, refreshing ahead", {
    timeout: (SECONDS + 60) * 1000,
  }, async () => {
    const proxy = await startProxy(home, "short");
    try {
      const { client } = proxy;
      bed.as.resetCounters();
      bed.mcp.resetCounters();
      const errors: string[] = [];
      const latencies: number[] = [];
      const end = Date.now() + SECONDS * 1000;
      let n = 0;
      while (Date.now() < end) {
        const tick = Date.now();
        const text = `call ${++n}`;
        try {
          const result = await client.callTool({ name: "echo", arguments: { text } });
          if (textOf(result) !== text) errors.push(`${text}: wrong answer ${textOf(result)}`);
        } catch (error) {
          errors.push(`${text}: ${error instanceof Error ? error.message : String(error)}`);
        }
        latencies.push(Date.now() - tick);
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - tick))));
      }
      assert.deepEqual(errors, []);
      assert.equal(bed.mcp.counters.unauthorized, 0, "a request went out with an expired token");
      // At least one refresh per token lifetime, each ahead of expiry.
      assert.ok(
        bed.as.counters.refreshGrantsSucceeded >= Math.floor(SECONDS / TTL),
        `only ${bed.as.counters.refreshGrantsSucceeded} refreshes`,
      );
      assert.equal(bed.as.counters.rejectedRefreshTokens, 0);
      latencies.sort((a, b) => a - b);
      const worst = latencies[latencies.length - 1]!;
      assert.ok(worst < 1_000, `a call took ${worst} ms`);
      assert.doesNotMatch(proxy.stderr(), /proxy_skip/);
    } finally {
      await proxy.close();
    }
  });
});
