/**
 * Harness for the unattended commands (ensure, run, keepalive, status, token): a test bed, a
 * private file store with authorized connectors, the CLI in-process with captured output, or as a
 * real child process (`src/cli/bin.ts`, see support/child-entry.ts) when signals and env matter.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Clock, systemClock } from "../../src/core/clock.js";
import type { ConnectorSettings } from "../../src/core/record.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/types.js";
import { startTestBed, type TestBed, type TestBedOptions } from "../bed/index.js";
import { nodeArgsFor } from "../support/child-entry.js";
import { connectTestBed } from "../support/connect.js";
import { runCliInProcess } from "../support/run-cli.js";
import { recordCliRun, recordOutput, recordOutputFiles } from "../support/secret-scan.js";

export const MAIN = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));
/** The command line that runs the CLI as a child process (built at first use). */
export function cliCommand(): string[] {
  return [process.execPath, ...nodeArgsFor(MAIN)];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Every stdout line that parses as JSON. */
  lines: Record<string, unknown>[];
}

export interface Harness {
  bed: TestBed;
  home: string;
  storeUrl: string;
  store: Store;
  env: NodeJS.ProcessEnv;
  connect(name: string, options?: { scope?: string; settings?: ConnectorSettings }): Promise<void>;
  /** The CLI in-process. `--store` is added unless the argv has it. */
  cli(
    argv: string[],
    options?: { env?: NodeJS.ProcessEnv; signal?: AbortSignal; clock?: Clock },
  ): Promise<CliResult>;
  /** The CLI as a child process. */
  spawnCli(
    argv: string[],
    options?: { env?: NodeJS.ProcessEnv },
  ): { child: ChildProcess; done: Promise<CliResult> };
  close(): Promise<void>;
}

export async function startHarness(bedOptions: TestBedOptions = {}): Promise<Harness> {
  const bed = await startTestBed(bedOptions);
  const home = await mkdtemp(join(tmpdir(), "tk-unattended-"));
  const storeUrl = pathToFileURL(join(home, "state")).href;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, TOKENKEEPER_STORE: storeUrl };
  const store = await openStore(storeUrl, { env, clock: systemClock });
  return {
    bed,
    home,
    storeUrl,
    store,
    env,
    async connect(name, options = {}) {
      await connectTestBed(bed, store, name, options);
    },
    async cli(argv, options = {}) {
      const result = await runCliInProcess(argv, {
        env: { ...env, ...options.env },
        ...(options.clock ? { clock: options.clock } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return { ...result, lines: jsonLines(result.stdout) };
    },
    spawnCli(argv, options = {}) {
      const [node, ...nodeArgs] = cliCommand();
      const child = spawn(node!, [...nodeArgs, ...argv], {
        env: { ...env, ...options.env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout!.on("data", (c) => {
        out += c;
      });
      child.stderr!.on("data", (c) => {
        err += c;
      });
      const done = new Promise<CliResult>((resolve) => {
        child.on("close", (code, signal) => {
          recordCliRun(argv, out, err, "child-process");
          resolve({
            code: code ?? 128 + (signal === "SIGKILL" ? 9 : 15),
            stdout: out,
            stderr: err,
            lines: jsonLines(out),
          });
        });
      });
      return { child, done };
    },
    async close() {
      await store.close();
      await bed.close();
      // Events logs, skip files, notification dumps: on the record for the secret scan (the
      // token store itself, state/, holds secrets by design).
      recordOutputFiles(home, ["state"]);
      await rm(home, { recursive: true, force: true });
    },
  };
}

export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      out.push(JSON.parse(t));
    } catch {
      // not JSON: a human line
    }
  }
  return out;
}

/** A webhook receiver on 127.0.0.1 that records every POST body and answers `status`. */
export async function startWebhook(
  status = 200,
): Promise<{ url: string; bodies: unknown[]; setStatus(s: number): void; close(): Promise<void> }> {
  const bodies: unknown[] = [];
  let answer = status;
  const server: Server = createServer((req: IncomingMessage, res) => {
    let data = "";
    req.on("data", (c) => {
      data += c;
    });
    req.on("end", () => {
      recordOutput(`webhook body ${req.url ?? ""}`, data);
      try {
        bodies.push(JSON.parse(data));
      } catch {
        bodies.push(data);
      }
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook/secret-path-part`,
    bodies,
    setStatus(s) {
      answer = s;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export { waitFor } from "../support/wait-for.js";
