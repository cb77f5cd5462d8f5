/**
 * Waiting for a condition instead of sleeping: polls `predicate` until it holds, and fails with
 * what was awaited once `timeoutMs` of real time has passed. Bounds are generous on purpose: the
 * suite must pass on a loaded 2-core machine.
 */
import { setTimeout as sleep } from "node:timers/promises";

export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "the condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
