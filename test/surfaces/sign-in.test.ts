import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { BrowserSignIn, signInOpenError } from "../../src/surfaces/proxy/sign-in.js";
import { makeRecord } from "../support/fixtures.js";

describe("BrowserSignIn", () => {
  it("one sign-in across instances sharing a store; the others say it is open elsewhere; the lock is freed after", async () => {
    const store = new MemoryStore();
    const record = makeRecord("gui");
    let logins = 0;
    let finish!: () => void;
    const login = async (_r: unknown, onUrl: (url: string) => void) => {
      logins++;
      onUrl("https://as.example/auth?x=1");
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
    };
    const a = new BrowserSignIn({ store, clock: systemClock, login, loginTimeoutMs: 60_000 });
    const b = new BrowserSignIn({ store, clock: systemClock, login, loginTimeoutMs: 60_000 });
    const first = a.start(record);
    assert.equal(a.start(record), first, "joined in the same process");
    for (let i = 0; i < 100 && !a.view()?.url; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(a.view(), { here: true, url: "https://as.example/auth?x=1" });
    assert.equal(await b.start(record), "elsewhere");
    assert.deepEqual(b.view(), { here: false });
    finish();
    assert.equal(await first, "signed_in");
    assert.equal(logins, 1);
    assert.equal(a.view(), undefined);
    // The next episode can open it again.
    const again = b.start(record);
    for (let i = 0; i < 100 && logins < 2; i++) await new Promise((r) => setTimeout(r, 10));
    finish();
    assert.equal(await again, "signed_in");
  });

  it("a failed login reports failed and frees the lock; the error a call gets is typed", async () => {
    const store = new MemoryStore();
    const record = makeRecord("gui");
    const s = new BrowserSignIn({
      store,
      clock: systemClock,
      loginTimeoutMs: 1_000,
      login: async () => {
        throw new Error("timed out");
      },
    });
    assert.equal(await s.start(record), "failed");
    assert.equal(s.view(), undefined);
    const e = signInOpenError("gui", { here: true, url: "https://as.example/auth" }, 1);
    assert.equal(e.code, "reauth_required");
    assert.equal(e.reason, "sign_in_open");
    assert.match(e.action, /https:\/\/as\.example\/auth/);
  });
});
