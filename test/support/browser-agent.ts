/**
 * A stand-in for the person's browser, usable as $BROWSER (`node --import tsx browser-agent.ts
 * <url>`) or in-process: it follows redirects from the authorization URL through the test
 * server's auto-consent to the loopback callback, keeping cookies like a browser would.
 *
 * Environment knobs for hostile tests (script mode):
 * - BROWSER_AGENT_TAMPER=state|iss|drop-iss: alter the callback before delivering it;
 * - BROWSER_AGENT_LOG=<file>: append one JSON line per run (hops, final status, no query strings).
 */
import { appendFileSync } from "node:fs";

export type Tamper = "state" | "iss" | "drop-iss" | undefined;

export interface AgentResult {
  /** Origin + path of every URL visited (never the query: it holds codes). */
  hops: string[];
  finalStatus: number;
  finalBody: string;
  /** Whether the last request went to a loopback callback (code or error in the query). */
  reachedCallback: boolean;
}

class Jar {
  readonly #cookies = new Map<string, Map<string, string>>();
  store(url: URL, response: Response): void {
    const set = response.headers.getSetCookie?.() ?? [];
    for (const line of set) {
      const [pair] = line.split(";");
      const eq = pair?.indexOf("=") ?? -1;
      if (!pair || eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const host = url.host;
      if (!this.#cookies.has(host)) this.#cookies.set(host, new Map());
      if (/max-age=0|expires=thu, 01 jan 1970/i.test(line)) this.#cookies.get(host)!.delete(name);
      else this.#cookies.get(host)!.set(name, value);
    }
  }
  header(url: URL): string | undefined {
    const c = this.#cookies.get(url.host);
    if (!c || c.size === 0) return undefined;
    return [...c.entries()].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

function isCallback(url: URL, start: URL): boolean {
  return url.origin !== start.origin && (url.searchParams.has("code") || url.searchParams.has("error"));
}

function tamper(url: URL, how: Tamper): URL {
  const out = new URL(url);
  if (how === "state") out.searchParams.set("state", "forged-state-value");
  if (how === "iss") out.searchParams.set("iss", "https://attacker.example");
  if (how === "drop-iss") out.searchParams.delete("iss");
  return out;
}

export async function followAuthorization(
  authorizationUrl: string,
  options: { tamper?: Tamper; maxHops?: number } = {},
): Promise<AgentResult> {
  const jar = new Jar();
  const start = new URL(authorizationUrl);
  let url = start;
  const hops: string[] = [];
  for (let i = 0; i < (options.maxHops ?? 20); i++) {
    const callback = isCallback(url, start);
    if (callback) url = tamper(url, options.tamper);
    hops.push(`${url.origin}${url.pathname}`);
    const cookie = jar.header(url);
    const response = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
    jar.store(url, response);
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    return {
      hops,
      finalStatus: response.status,
      finalBody: await response.text(),
      reachedCallback: callback,
    };
  }
  throw new Error(
    `too many redirects from ${start.origin}${start.pathname}: ${hops.slice(0, 6).join(" -> ")}`,
  );
}

const isMain =
  process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/").split("/").pop() ?? "\0");
if (isMain) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write("usage: browser-agent <authorization-url>\n");
    process.exit(64);
  }
  const how = (process.env.BROWSER_AGENT_TAMPER || undefined) as Tamper;
  followAuthorization(target, { tamper: how }).then(
    (result) => {
      if (process.env.BROWSER_AGENT_LOG) {
        appendFileSync(
          process.env.BROWSER_AGENT_LOG,
          `${JSON.stringify({ hops: result.hops, status: result.finalStatus, callback: result.reachedCallback })}\n`,
        );
      }
      process.exit(result.reachedCallback ? 0 : 1);
    },
    (error: unknown) => {
      if (process.env.BROWSER_AGENT_LOG)
        appendFileSync(process.env.BROWSER_AGENT_LOG, `${JSON.stringify({ error: String(error) })}\n`);
      process.exit(1);
    },
  );
}
