import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { ManualClock, systemClock } from "../../src/core/clock.js";
import type { TokenkeeperError } from "../../src/core/errors.js";
import { startLoopbackListener } from "../../src/oauth/loopback-callback.js";
import { browserCommand, openBrowser, type SpawnLike, splitCommand } from "../../src/oauth/open-browser.js";

describe("loopback redirect listener (RFC 8252 §7.3)", () => {
  it("listens on 127.0.0.1, delivers one callback and tells the person they may close the window", async () => {
    const listener = await startLoopbackListener();
    try {
      assert.match(listener.redirectUri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      const waiting = listener.waitForCallback({ clock: systemClock, timeoutMs: 5000 });
      const page = await fetch(`${listener.redirectUri}?code=abc&state=xyz`);
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.match(html, /You may close this window/);
      assert.doesNotMatch(html, /abc/, "the page never echoes the code");
      const params = await waiting;
      assert.equal(params.get("code"), "abc");
      const again = await fetch(`${listener.redirectUri}?code=def&state=xyz`);
      assert.equal(again.status, 409);
      assert.equal((await fetch(listener.redirectUri.replace("/callback", "/other"))).status, 404);
    } finally {
      await listener.close();
    }
  });

  it("shows the describer's verdict on the page", async () => {
    const listener = await startLoopbackListener();
    try {
      listener.setDescriber(() => ({ ok: false, title: "Login failed", message: "state <mismatch>" }));
      const res = await fetch(`${listener.redirectUri}?code=abc&state=bad`);
      assert.equal(res.status, 400);
      const html = await res.text();
      assert.match(html, /Login failed/);
      assert.match(html, /state &#60;mismatch&#62;/);
    } finally {
      await listener.close();
    }
  });

  it("answers a request its describer ignores and keeps waiting for the real one", async () => {
    const listener = await startLoopbackListener();
    try {
      listener.setDescriber((p) =>
        p.get("state") === "right"
          ? { ok: true, title: "ok", message: "ok" }
          : { ok: false, ignore: true, title: "Not this login", message: "ignored" },
      );
      const waiting = listener.waitForCallback({ clock: systemClock, timeoutMs: 10_000 });
      assert.equal((await fetch(`${listener.redirectUri}?code=x&state=forged`)).status, 400);
      assert.equal((await fetch(`${listener.redirectUri}?error=access_denied`)).status, 400);
      assert.equal((await fetch(`${listener.redirectUri}?code=real&state=right`)).status, 200);
      assert.equal((await waiting).get("code"), "real");
    } finally {
      await listener.close();
    }
  });

  it("times out by the injected clock, with a clear message", async () => {
    const clock = new ManualClock();
    const listener = await startLoopbackListener();
    try {
      const waiting = listener.waitForCallback({ clock, timeoutMs: 300_000 });
      await clock.advance(299_999);
      let done = false;
      waiting.catch(() => {}).finally(() => (done = true));
      await clock.advance(0);
      assert.equal(done, false);
      await clock.advance(1);
      await assert.rejects(waiting, (e: TokenkeeperError) => {
        assert.equal(e.fields.problem, "callback_timeout");
        assert.match(e.message, /within 5m/);
        return true;
      });
    } finally {
      await listener.close();
    }
  });

  it("stops waiting when cancelled", async () => {
    const listener = await startLoopbackListener();
    const controller = new AbortController();
    try {
      const waiting = listener.waitForCallback({
        clock: systemClock,
        timeoutMs: 60_000,
        signal: controller.signal,
      });
      controller.abort();
      await assert.rejects(waiting, (e: TokenkeeperError) => e.code === "cancelled");
    } finally {
      await listener.close();
    }
  });

  it("uses a fixed port when asked, and says when it is taken", async () => {
    const first = await startLoopbackListener();
    try {
      await assert.rejects(
        startLoopbackListener({ port: first.port }),
        (e: TokenkeeperError) => e.code === "invalid_config" && /in use/.test(e.message),
      );
    } finally {
      await first.close();
    }
  });
});

describe("opening the browser", () => {
  it("splits $BROWSER into words without a shell, honouring quotes and %s", () => {
    assert.deepEqual(splitCommand(`"/opt/my browser/bin" --new-window 'a b' c\\ d`), [
      "/opt/my browser/bin",
      "--new-window",
      "a b",
      "c d",
    ]);
    assert.deepEqual(browserCommand("https://x/?a=1&b=2", { env: { BROWSER: "firefox -P work" } }), {
      file: "firefox",
      args: ["-P", "work", "https://x/?a=1&b=2"],
    });
    assert.deepEqual(browserCommand("https://x/", { env: { BROWSER: "open-url --url=%s --fg" } }), {
      file: "open-url",
      args: ["--url=https://x/", "--fg"],
    });
  });
  it("falls back to the platform opener only when allowed", () => {
    assert.deepEqual(browserCommand("https://x/", { env: {}, platform: "linux" }), {
      file: "xdg-open",
      args: ["https://x/"],
    });
    assert.deepEqual(browserCommand("https://x/", { env: {}, platform: "darwin" }), {
      file: "open",
      args: ["https://x/"],
    });
    assert.equal(browserCommand("https://x/", { env: {}, usePlatformOpener: false }), undefined);
  });
  it("spawns detached and reports a missing program without the URL", async () => {
    const calls: { file: string; args: readonly string[]; options: Record<string, unknown> }[] = [];
    const spawn = ((file: string, args: readonly string[], options: Record<string, unknown>) => {
      calls.push({ file, args, options });
      const child = new EventEmitter() as EventEmitter & { unref(): void };
      child.unref = () => {};
      queueMicrotask(() => child.emit("spawn"));
      return child;
    }) as unknown as SpawnLike;
    const ok = await openBrowser("https://as/authorize?state=s", { env: { BROWSER: "mybrowser" }, spawn });
    assert.deepEqual(ok, { opened: true, command: "mybrowser" });
    assert.equal(calls[0]!.options.detached, true);
    assert.equal(calls[0]!.options.stdio, "ignore");
    const missing = await openBrowser("https://as/authorize?state=s", {
      env: { BROWSER: "/nonexistent/browser-binary" },
    });
    assert.equal(missing.opened, false);
    assert.ok(missing.error);
    assert.doesNotMatch(missing.error!, /state=s/);
  });

  it("gives the browser no secret of ours, whichever command opens it", async () => {
    let env: NodeJS.ProcessEnv = {};
    const spawn = ((_file: string, _args: readonly string[], options: { env: NodeJS.ProcessEnv }) => {
      env = options.env;
      const child = new EventEmitter() as EventEmitter & { unref(): void };
      child.unref = () => {};
      queueMicrotask(() => child.emit("spawn"));
      return child;
    }) as unknown as SpawnLike;
    await openBrowser("https://as/authorize?state=s", {
      env: {
        BROWSER: "mybrowser",
        HOME: "/home/someone",
        TOKENKEEPER_KEY: "k",
        TOKENKEEPER_CLIENT_SECRET: "s",
        TOKENKEEPER_RUN_SECRET: "r",
        MY_SECRET: "m",
      },
      alsoStrip: ["MY_SECRET"],
      spawn,
    });
    assert.deepEqual(env, { BROWSER: "mybrowser", HOME: "/home/someone" });
  });
});
