/** Runs the CLI in-process with captured output, a private TOKENKEEPER_HOME and the browser agent as $BROWSER. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { systemClock } from "../../src/core/clock.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/types.js";
import { runCliInProcess } from "../support/run-cli.js";
import { recordOutputFiles } from "../support/secret-scan.js";

export const AGENT = fileURLToPath(new URL("../support/browser-agent.ts", import.meta.url));
/** A $BROWSER that completes the authorization by following redirects, as a separate process. */
export const AGENT_BROWSER = `"${process.execPath}" --import tsx "${AGENT}"`;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json: Record<string, unknown> | undefined;
}

export interface RunOptions {
  interactive?: boolean;
  signal?: AbortSignal;
  /** Sees stderr as it is written (e.g. to read a device code while login waits). */
  onStderr?: (textSoFar: string) => void;
  /** What the person types at a prompt; stdin then looks like a terminal. */
  typed?: string;
}

export interface Cli {
  home: string;
  env: NodeJS.ProcessEnv;
  run(argv: string[], extraEnv?: NodeJS.ProcessEnv, options?: RunOptions): Promise<RunResult>;
  openStore(): Promise<Store>;
  /** The names of the connectors in this CLI's store (opened and closed for the call). */
  storedNames(): Promise<string[]>;
  cleanup(): Promise<void>;
}

function terminalInput(typed: string | undefined): PassThrough {
  const stdin = new PassThrough();
  if (typed === undefined) return stdin;
  const tty = stdin as PassThrough & { isTTY: boolean; setRawMode(mode: boolean): void; rawModes: boolean[] };
  tty.isTTY = true;
  tty.rawModes = [];
  tty.setRawMode = (mode) => void tty.rawModes.push(mode);
  stdin.write(typed);
  return stdin;
}

export async function makeCli(baseEnv: NodeJS.ProcessEnv = {}): Promise<Cli> {
  const home = await mkdtemp(join(tmpdir(), "tk-cli-"));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    TOKENKEEPER_HOME: join(home, "state"),
    BROWSER: AGENT_BROWSER,
    ...baseEnv,
  };
  return {
    home,
    env,
    async run(argv, extraEnv = {}, options = {}) {
      const {
        code,
        stdout: out,
        stderr: err,
      } = await runCliInProcess(argv, {
        env: { ...env, ...extraEnv },
        stdin: terminalInput(options.typed),
        interactive: options.interactive ?? false,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onStderr ? { onStderr: options.onStderr } : {}),
      });
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(out.trim().split("\n").pop() ?? "");
      } catch {
        json = undefined;
      }
      return { code, stdout: out, stderr: err, json };
    },
    openStore: () => openStore(undefined, { env, clock: systemClock }),
    async storedNames() {
      const store = await openStore(undefined, { env, clock: systemClock });
      try {
        return await store.list();
      } finally {
        await store.close();
      }
    },
    cleanup: () => {
      // Anything a command wrote beside the token store goes on the record for the secret scan.
      recordOutputFiles(home, ["state"]);
      return rm(home, { recursive: true, force: true });
    },
  };
}
