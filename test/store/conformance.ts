/**
 * One conformance suite for every Store backend. A backend's test file calls
 * describeStoreConformance() with a factory that returns a fresh, empty store (and, for
 * network stores, a second independent client to the same backend).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ConflictError, LockTimeoutError } from "../../src/core/errors.js";
import { serializeRecord } from "../../src/core/record.js";
import { Secret } from "../../src/core/secret.js";
import type { Store } from "../../src/store/types.js";
import { makeRecord, makeTokens } from "../support/fixtures.js";

export interface ConformanceTarget {
  /** A fresh store with no connectors (unique namespace per call). */
  create(): Promise<{ store: Store; second: () => Promise<Store>; cleanup: () => Promise<void> }>;
}

export function describeStoreConformance(label: string, target: ConformanceTarget): void {
  describe(`Store conformance: ${label}`, () => {
    let store: Store;
    let second: () => Promise<Store>;
    let cleanup: () => Promise<void>;
    const opened: Store[] = [];

    before(async () => {
      ({ store, second, cleanup } = await target.create());
    });
    after(async () => {
      for (const s of opened) await s.close();
      await store.close();
      await cleanup();
    });
    const other = async () => {
      const s = await second();
      opened.push(s);
      return s;
    };

    it("round-trips a record, secrets included, and starts at version 1", async () => {
      const record = makeRecord("rt");
      const version = await store.put("rt", record, null);
      assert.equal(version, 1);
      const got = await store.get("rt");
      assert.ok(got);
      assert.equal(got.version, 1);
      assert.deepEqual(serializeRecord(got.record), serializeRecord(record));
      assert.equal(got.record.tokens?.accessToken.reveal(), "access-token-value-0001");
    });

    it("returns null for an unknown connector", async () => {
      assert.equal(await store.get("nobody"), null);
    });

    it("compare-and-set refuses a create over an existing record and a stale version", async () => {
      await store.put("cas", makeRecord("cas"), null);
      await assert.rejects(store.put("cas", makeRecord("cas"), null), ConflictError);
      const v2 = await store.put("cas", makeRecord("cas"), 1);
      assert.equal(v2, 2);
      await assert.rejects(store.put("cas", makeRecord("cas"), 1), ConflictError);
      await assert.rejects(store.put("cas-absent", makeRecord("cas-absent"), 3), ConflictError);
    });

    it("lets exactly one of many concurrent writers at the same version win", async () => {
      await store.put("race", makeRecord("race"), null);
      const results = await Promise.allSettled(
        Array.from({ length: 16 }, (_, i) =>
          store.put(
            "race",
            makeRecord("race", { tokens: makeTokens({ accessToken: new Secret(`at-${i}`) }) }),
            1,
          ),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1);
      for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
      assert.equal((await store.get("race"))?.version, 2);
    });

    it("sees writes made through a second client", async () => {
      const b = await other();
      await store.put("shared", makeRecord("shared"), null);
      const got = await b.get("shared");
      assert.equal(got?.version, 1);
      await b.put("shared", makeRecord("shared", { scope: "changed" }), 1);
      assert.equal((await store.get("shared"))?.record.scope, "changed");
    });

    it("lists names sorted and deletes with an optional version check", async () => {
      await store.put("zeta", makeRecord("zeta"), null);
      await store.put("alpha", makeRecord("alpha"), null);
      const names = await store.list();
      assert.deepEqual(
        names.filter((n) => n === "alpha" || n === "zeta"),
        ["alpha", "zeta"],
      );
      assert.deepEqual([...names].sort(), names);
      await assert.rejects(store.delete("zeta", 7), ConflictError);
      assert.equal(await store.delete("zeta", 1), true);
      assert.equal(await store.delete("zeta"), false);
      assert.equal(await store.get("zeta"), null);
    });

    it("gives the lock to one holder at a time, across clients", async () => {
      const b = await other();
      const lock = await store.lock("locked", { leaseMs: 5_000, waitMs: 100 });
      assert.ok(lock.held());
      const started = Date.now();
      await assert.rejects(b.lock("locked", { leaseMs: 5_000, waitMs: 150 }), LockTimeoutError);
      assert.ok(Date.now() - started >= 140, "waited about waitMs before giving up");
      await lock.release();
      const lock2 = await b.lock("locked", { leaseMs: 5_000, waitMs: 100 });
      assert.ok(lock2.held());
      await lock2.release();
    });

    it("a waiter gets the lock soon after the holder releases it", async () => {
      const lock = await store.lock("handoff", { leaseMs: 5_000, waitMs: 100 });
      const waiting = (await other()).lock("handoff", { leaseMs: 5_000, waitMs: 3_000 });
      await sleep(50);
      const released = Date.now();
      await lock.release();
      const got = await waiting;
      assert.ok(Date.now() - released < 1_000, "handed over within a second");
      await got.release();
    });

    it("lets others take a lock whose lease ran out, and the old holder's release does not free it", async () => {
      const stale = await store.lock("lease", { leaseMs: 150, waitMs: 100 });
      const b = await other();
      const fresh = await b.lock("lease", { leaseMs: 5_000, waitMs: 2_000 });
      assert.equal(stale.held(), false);
      await stale.release();
      await assert.rejects(store.lock("lease", { leaseMs: 5_000, waitMs: 100 }), LockTimeoutError);
      await fresh.release();
    });

    it("tells a holder how much of its lease is left, asking the store, and 0 once released", async () => {
      const lock = await store.lock("left", { leaseMs: 5_000, waitMs: 100 });
      const left = await lock.remainingMs();
      assert.ok(left > 3_000 && left <= 5_000, `about the whole lease left (${left} ms)`);
      await lock.release();
      assert.equal(await lock.remainingMs(), 0);
      const again = await (await other()).lock("left", { leaseMs: 5_000, waitMs: 100 });
      assert.ok((await again.remainingMs()) > 3_000, "the next holder has its own lease");
      assert.equal(await lock.remainingMs(), 0, "the old handle does not see the new holder's lease");
      await again.release();
    });

    it("tells a holder whose lease ran out that nothing is left, whether or not someone took over", async () => {
      const alone = await store.lock("ran-out", { leaseMs: 150, waitMs: 100 });
      // Nobody takes the lock: the lease still ends by the store's reckoning.
      for (const started = Date.now(); (await alone.remainingMs()) > 0; await sleep(20)) {
        assert.ok(Date.now() - started < 5_000, "the lease ran out within 5 s");
      }
      const stale = await store.lock("taken", { leaseMs: 150, waitMs: 100 });
      const fresh = await (await other()).lock("taken", { leaseMs: 5_000, waitMs: 2_000 });
      assert.equal(await stale.remainingMs(), 0);
      assert.ok((await fresh.remainingMs()) > 3_000);
      await fresh.release();
      await alone.release();
    });

    it("fences a holder that paused past its lease: its write loses to the newer token set", async () => {
      await store.put("fenced", makeRecord("fenced"), null);
      // Holder A reads version 1 under a short lease, then stalls.
      const lockA = await store.lock("fenced", { leaseMs: 100, waitMs: 100 });
      const readA = await store.get("fenced");
      assert.ok(readA);
      // Holder B takes over after the lease, refreshes, writes version 2.
      const b = await other();
      const lockB = await b.lock("fenced", { leaseMs: 5_000, waitMs: 2_000 });
      const readB = await b.get("fenced");
      assert.ok(readB);
      const newer = makeRecord("fenced", { tokens: makeTokens({ accessToken: new Secret("newer-access") }) });
      await b.put("fenced", newer, readB.version);
      await lockB.release();
      // A wakes up and tries to write what it got: fenced by the version.
      const older = makeRecord("fenced", { tokens: makeTokens({ accessToken: new Secret("older-access") }) });
      await assert.rejects(store.put("fenced", older, readA.version), ConflictError);
      await lockA.release();
      assert.equal((await store.get("fenced"))?.record.tokens?.accessToken.reveal(), "newer-access");
    });
  });
}
