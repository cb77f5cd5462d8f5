/**
 * The fast path of `tokenkeeper token NAME` and `tokenkeeper headers NAME`: the commands that a
 * headersHelper, `$(tokenkeeper token NAME)` and racing cron jobs start again and again. bin.ts
 * asks here first; the build bundles this module and everything it imports into one file
 * (scripts/bundle-bin.mjs), so the common call loads two module files instead of twenty.
 *
 * It answers only the plain success: a token the file store holds fresh (the manager's own
 * decision, same policy), for a command line without options other than `--json`. Everything
 * else — any other flag, a network store, inside `tokenkeeper run`, a missing, damaged, linked or
 * non-private file or directory, a token due for refresh, a dead grant, a token a header cannot
 * carry — returns null and the full CLI runs, which gives every error its message and exit code.
 * So the fast path never decides a failure; it can only agree with the full CLI or step aside.
 *
 * Reading is read-only: no directory is created, no temp file swept, no lock taken (the full
 * CLI's store does those on open). Synchronous fs calls: a one-shot process waits for each
 * anyway, and they skip the thread pool's start-up.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Clock, systemClock } from "../core/clock.js";
import { CONNECTOR_NAME, type ConnectorRecord, parseRecord } from "../core/record.js";
import { DEFAULT_VIEW_POLICY, freshStoredTokens } from "../manager/view.js";
import { isB64Token } from "../oauth/token-response.js";
import { privacyProblem } from "../store/privacy.js";
import { defaultStateDir } from "../store/state-dir.js";
import { storeKindOf } from "../store/store-url.js";
import { tokenOutput } from "./token-output.js";
import { VERSION } from "./version.js";

interface Request {
  command: "token" | "headers";
  name: string;
  json: boolean;
}

/** The command line, when it is one the fast path answers: `token|headers NAME [--json]`. */
function request(argv: readonly string[]): Request | null {
  const [command, ...rest] = argv;
  if (command !== "token" && command !== "headers") return null;
  let name: string | undefined;
  let json = false;
  for (const word of rest) {
    if (word === "--json" && !json) json = true;
    else if (name === undefined && CONNECTOR_NAME.test(word) && !word.includes("..")) name = word;
    else return null;
  }
  return name === undefined ? null : { command, name, json };
}

/** The state directory of a file store named by the environment; null for any other store. */
function fileStoreDir(env: NodeJS.ProcessEnv): string | null {
  const url = env.TOKENKEEPER_STORE?.trim();
  if (!url) return defaultStateDir(env);
  if (storeKindOf(url) !== "file") return null;
  // A file URL that does not parse throws: the full CLI reports that configuration error.
  return fileURLToPath(url);
}

/** A directory the file store would accept as private (the same rule it applies on open). */
function privateDirectory(path: string, follow: boolean, uid: number): boolean {
  const st = follow ? statSync(path) : lstatSync(path);
  return st.isDirectory() && !st.isSymbolicLink() && privacyProblem(st, uid) === null;
}

/**
 * The connector's record, read the way the file store reads it (no symlink followed, no FIFO
 * waited on, a private regular file of ours), without creating or moving anything.
 */
function readRecord(dir: string, name: string, uid: number): ConnectorRecord {
  if (!privateDirectory(dir, true, uid)) throw new Error("state directory");
  const connectors = join(dir, "connectors");
  if (!privateDirectory(connectors, false, uid)) throw new Error("connectors directory");
  // The file store would create the locks directory; one that exists must pass its check too.
  try {
    if (!privateDirectory(join(dir, "locks"), false, uid)) throw new Error("locks directory");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const fd = openSync(
    join(connectors, `${name}.json`),
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
  );
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || privacyProblem(st, uid) !== null) throw new Error("token file");
    const text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(fd));
    const data = JSON.parse(text) as { version?: unknown; record?: unknown };
    if (!Number.isInteger(data.version) || (data.version as number) < 1) throw new Error("envelope");
    return parseRecord(data.record, "");
  } finally {
    closeSync(fd);
  }
}

/**
 * What the command prints on stdout, when the fast path can answer; null means "run the full
 * CLI". Never throws: any doubt is null.
 */
export function fastAnswer(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  clock: Clock = systemClock,
): string | null {
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) return `${VERSION}\n`;
  const req = request(argv);
  // Inside `tokenkeeper run` the token comes from the run's endpoint; Windows has no O_NOFOLLOW
  // nor POSIX owners, so its reads keep the file store's own checks.
  if (!req || env.TOKENKEEPER_RUN_URL || process.platform === "win32") return null;
  const uid = process.getuid?.();
  if (uid === undefined) return null;
  try {
    const dir = fileStoreDir(env);
    if (dir === null) return null;
    const record = readRecord(dir, req.name, uid);
    // Exactly the check cliAccessToken makes before it would load the manager (no --min-ttl here).
    const tokens = freshStoredTokens(record, clock.now(), 0, DEFAULT_VIEW_POLICY);
    if (!tokens) return null;
    const value = tokens.accessToken.reveal();
    if (!isB64Token(value)) return null;
    return tokenOutput(req.command, req.json, {
      connector: req.name,
      accessToken: value,
      tokenType: tokens.tokenType,
      expiresAt: tokens.expiresAt,
    });
  } catch {
    return null;
  }
}
