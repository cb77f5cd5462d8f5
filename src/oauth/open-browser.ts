/**
 * Opens a URL in the user's browser: `$BROWSER` when set (split into words, no shell; a word
 * containing "%s" receives the URL, else it is appended), else the platform opener. The child
 * is detached and never awaited beyond its spawn: login does not depend on it, because the URL
 * is always printed too.
 */

import { spawn as nodeSpawn } from "node:child_process";
import { childEnv } from "../core/child-env.js";

export interface OpenResult {
  opened: boolean;
  /** The program started (never the URL). */
  command?: string;
  error?: string;
}

export type SpawnLike = typeof nodeSpawn;

export interface OpenBrowserOptions {
  /** Tokenkeeper's environment; the browser gets it without our secrets (core/child-env.ts). */
  env: NodeJS.ProcessEnv;
  /** Further secret-bearing variables to keep from the browser (a login's --client-secret-env). */
  alsoStrip?: readonly string[];
  platform?: NodeJS.Platform;
  /** Use the platform opener when $BROWSER is unset (off for unattended runs). */
  usePlatformOpener?: boolean;
  spawn?: SpawnLike;
}

/** Splits a command line into words, honouring single and double quotes and backslash escapes. */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The program and arguments that would open `url`, or undefined when there is none to use. */
export function browserCommand(
  url: string,
  options: Omit<OpenBrowserOptions, "spawn">,
): { file: string; args: string[] } | undefined {
  const browser = options.env.BROWSER?.trim();
  if (browser) {
    const words = splitCommand(browser);
    if (words.length === 0) return undefined;
    const hasPlaceholder = words.some((w) => w.includes("%s"));
    const args = words.slice(1).map((w) => w.replaceAll("%s", url));
    const file = words[0]!.replaceAll("%s", url);
    return { file, args: hasPlaceholder ? args : [...args, url] };
  }
  if (options.usePlatformOpener === false) return undefined;
  switch (options.platform ?? process.platform) {
    case "darwin":
      return { file: "open", args: [url] };
    case "win32":
      // `start` is a cmd built-in; the empty string is its window title argument.
      return { file: "cmd", args: ["/c", "start", '""', url.replace(/&/g, "^&")] };
    default:
      return { file: "xdg-open", args: [url] };
  }
}

/** Starts the browser. Resolves once the process has spawned (or failed to), never later. */
export function openBrowser(url: string, options: OpenBrowserOptions): Promise<OpenResult> {
  const cmd = browserCommand(url, options);
  if (!cmd) return Promise.resolve({ opened: false });
  const spawn = options.spawn ?? nodeSpawn;
  return new Promise<OpenResult>((resolve) => {
    try {
      const child = spawn(cmd.file, cmd.args, {
        detached: true,
        stdio: "ignore",
        // The browser is another program: it gets no client secret, store key or other secret of
        // ours, whichever command opens it (login, or a proxy's --reauth browser).
        env: childEnv(options.env, options.alsoStrip ? { alsoStrip: options.alsoStrip } : {}),
        windowsHide: true,
      });
      child.once("spawn", () => {
        child.unref();
        resolve({ opened: true, command: cmd.file });
      });
      child.once("error", (error) =>
        resolve({ opened: false, command: cmd.file, error: error.message.replaceAll(url, "<url>") }),
      );
    } catch (error) {
      resolve({
        opened: false,
        command: cmd.file,
        error: error instanceof Error ? error.message.replaceAll(url, "<url>") : String(error),
      });
    }
  });
}
