/**
 * `tokenkeeper proxy` against `mcp-remote`: same run, same bed, same machine. One SDK client
 * sends the same `tools/call` workload (1) directly to the bed's MCP server over Streamable
 * HTTP, (2) through `tokenkeeper proxy` over stdio, (3) through `mcp-remote` over stdio, its
 * authorization completed headlessly (bench/lib/mcp-remote-seed.ts). Reported for (2) and (3):
 * p50/p99 latency added to (1), throughput relative to (1), and the proxy process's resident
 * memory before and after a long pipelined run.
 *
 *   npx tsx bench/proxy-vs-mcp-remote.ts [--calls 400] [--big-calls 200] [--concurrency 16]
 *     [--throughput-seconds 5] [--memory-messages 100000] [--json FILE]
 *
 * Latency samples are taken in interleaved rounds (every mode in each round), so drift in the
 * machine's load spreads over all three instead of favouring one. Access tokens live 24 h, so
 * neither proxy refreshes during the run: this measures the relay, not the authorization server.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { FileStore } from "../src/store/file-store.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { bigPayload, startTestBed, type TestBed } from "../test/bed/index.js";
import { connectTestBed } from "../test/support/connect.js";
import { round, type Summary, summarize } from "./lib/latency-stats.js";
import { seedMcpRemote } from "./lib/mcp-remote-seed.js";
import { residentBytes } from "./lib/process-rss.js";

const REPO = fileURLToPath(new URL("../", import.meta.url));

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "400" },
    "big-calls": { type: "string", default: "200" },
    concurrency: { type: "string", default: "16" },
    "throughput-seconds": { type: "string", default: "5" },
    "memory-messages": { type: "string", default: "100000" },
    rounds: { type: "string", default: "5" },
    json: { type: "string" },
  },
});
const SMALL_CALLS = Number(values.calls);
const BIG_CALLS = Number(values["big-calls"]);
const CONCURRENCY = Number(values.concurrency);
const THROUGHPUT_MS = Number(values["throughput-seconds"]) * 1000;
const MEMORY_MESSAGES = Number(values["memory-messages"]);
const ROUNDS = Math.max(1, Number(values.rounds));
const SMALL_TEXT = "hello, proxy";
const BIG_TEXT = bigPayload(100 * 1024);

type ModeName = "direct" | "tokenkeeper" | "mcp-remote";

interface Mode {
  name: ModeName;
  client: Client;
  /** The proxy's process id (none for direct). */
  pid?: number;
  stderrBytes(): number;
  close(): Promise<void>;
}

/** Failed calls per mode. Each is retried once, so a rare connection reset does not end the run. */
const failures: Record<string, { count: number; examples: string[] }> = {};

async function call(mode: Mode, text: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = (await mode.client.callTool({ name: "echo", arguments: { text } })) as {
        content: { text: string }[];
      };
      if (result.content[0]?.text.length !== text.length) throw new Error("wrong answer");
      return;
    } catch (error) {
      const seen = failures[mode.name] ?? { count: 0, examples: [] };
      failures[mode.name] = seen;
      seen.count++;
      if (seen.examples.length < 5)
        seen.examples.push(error instanceof Error ? error.message.slice(0, 200) : String(error));
      if (attempt >= 2) throw error;
    }
  }
}

async function directMode(bed: TestBed, token: string): Promise<Mode> {
  const client = new Client({ name: "bench-direct", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(bed.mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      // The SDK hands every request the transport's one AbortSignal, on which fetch() leaves a
      // listener per request until garbage collection; thousands of them slow every request
      // down. The baseline drops the signal (nothing here aborts) so that it is not handicapped.
      fetch: (url, init) => fetch(url, { ...init, signal: null }),
    }),
  );
  return { name: "direct", client, stderrBytes: () => 0, close: () => client.close() };
}

async function stdioMode(
  name: ModeName,
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<Mode> {
  const transport = new StdioClientTransport({
    command,
    args,
    env: { PATH: process.env.PATH ?? "", ...env },
    stderr: "pipe",
    cwd: REPO,
  });
  let stderr = 0;
  // Drain it as an MCP client writing it to a log file would; a full pipe would stall the proxy.
  transport.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.length;
  });
  const client = new Client({ name: `bench-${name}`, version: "1.0.0" });
  await client.connect(transport);
  return {
    name,
    client,
    ...(transport.pid ? { pid: transport.pid } : {}),
    stderrBytes: () => stderr,
    close: () => client.close(),
  };
}

async function latencies(modes: Mode[]): Promise<Record<ModeName, { small: Summary; big: Summary }>> {
  const samples = new Map<ModeName, { small: number[]; big: number[] }>(
    modes.map((m) => [m.name, { small: [], big: [] }]),
  );
  for (const m of modes) {
    for (let i = 0; i < 200; i++) await call(m, SMALL_TEXT);
    for (let i = 0; i < 20; i++) await call(m, BIG_TEXT);
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of modes) {
      const s = samples.get(m.name)!;
      for (let i = 0; i < Math.ceil(SMALL_CALLS / ROUNDS); i++) {
        const t = performance.now();
        await call(m, SMALL_TEXT);
        s.small.push(performance.now() - t);
      }
      for (let i = 0; i < Math.ceil(BIG_CALLS / ROUNDS); i++) {
        const t = performance.now();
        await call(m, BIG_TEXT);
        s.big.push(performance.now() - t);
      }
    }
  }
  return Object.fromEntries(
    [...samples].map(([name, s]) => [name, { small: summarize(s.small), big: summarize(s.big) }]),
  ) as Record<ModeName, { small: Summary; big: Summary }>;
}

/** Calls completed with CONCURRENCY calls in flight for `ms`. */
async function burst(mode: Mode, ms: number): Promise<{ calls: number; seconds: number }> {
  const started = performance.now();
  const end = started + ms;
  let calls = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await call(mode, SMALL_TEXT);
        calls++;
      }
    }),
  );
  return { calls, seconds: (performance.now() - started) / 1000 };
}

/** Calls per second per mode, THROUGHPUT_MS each, in interleaved rounds. */
async function throughput(modes: Mode[]): Promise<Record<string, number>> {
  const totals = new Map(modes.map((m) => [m.name, { calls: 0, seconds: 0 }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of modes) {
      const b = await burst(m, THROUGHPUT_MS / ROUNDS);
      const t = totals.get(m.name)!;
      t.calls += b.calls;
      t.seconds += b.seconds;
    }
  }
  return Object.fromEntries([...totals].map(([name, t]) => [name, t.calls / t.seconds]));
}

interface MemoryResult {
  messages: number;
  baselineMiB: number;
  afterMiB: number;
  growthMiB: number;
  samplesMiB: number[];
}

/** Resident memory of the proxy before and after MEMORY_MESSAGES messages (a call is a request and a response). */
async function memory(mode: Mode): Promise<MemoryResult> {
  const pid = mode.pid!;
  const mib = (bytes: number) => round(bytes / 2 ** 20, 1);
  // Warm up at the same load first: the heap sizes itself to the allocation rate, which is
  // not growth. What we want to see is whether memory keeps rising with the message count.
  await pipelined(mode, Math.min(10_000, Math.ceil(MEMORY_MESSAGES / 10)), () => {});
  const baseline = await residentBytes(pid);
  const calls = Math.ceil(MEMORY_MESSAGES / 2);
  const samples: number[] = [];
  const every = Math.max(1, Math.floor(calls / 10));
  let nextSample = every;
  await pipelined(mode, calls, async (completed) => {
    if (completed >= nextSample) {
      nextSample += every;
      samples.push(mib(await residentBytes(pid)));
    }
  });
  const after = await residentBytes(pid);
  return {
    messages: calls * 2,
    baselineMiB: mib(baseline),
    afterMiB: mib(after),
    growthMiB: mib(after - baseline),
    samplesMiB: samples,
  };
}

/** `calls` small calls, 32 in flight; `progress` after each. */
async function pipelined(mode: Mode, calls: number, progress: (completed: number) => unknown): Promise<void> {
  let issued = 0;
  let completed = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (issued < calls) {
        issued++;
        await call(mode, SMALL_TEXT);
        await progress(++completed);
      }
    }),
  );
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(rows[0]!),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

async function main(): Promise<void> {
  const bed = await startTestBed({ accessTokenTtl: 24 * 3600 });
  const home = await mkdtemp(join(tmpdir(), "tk-bench-proxy-"));
  const modes: Mode[] = [];
  try {
    // Three logins, three token sets: one each for the direct client, Tokenkeeper's store and mcp-remote's files.
    const direct = await connectTestBed(bed, new MemoryStore(), "direct");
    const store = new FileStore({ dir: join(home, "tokenkeeper") });
    await connectTestBed(bed, store, "bench");
    await store.close();
    const remoteRecord = await connectTestBed(bed, new MemoryStore(), "mcp-remote");
    const remoteDir = join(home, "mcp-remote");
    await seedMcpRemote(remoteDir, bed.mcpUrl, remoteRecord);

    modes.push(await directMode(bed, direct.tokens!.accessToken.reveal()));
    modes.push(
      await stdioMode(
        "tokenkeeper",
        process.execPath,
        ["--import", "tsx", join(REPO, "src/cli/bin.ts"), "proxy", "bench"],
        {
          TOKENKEEPER_HOME: join(home, "tokenkeeper"),
        },
      ),
    );
    modes.push(
      await stdioMode(
        "mcp-remote",
        process.execPath,
        [join(REPO, "node_modules/mcp-remote/dist/proxy.js"), bed.mcpUrl],
        {
          MCP_REMOTE_CONFIG_DIR: remoteDir,
          HOME: home,
        },
      ),
    );
    const registrationsBefore = bed.as.counters.registrations;
    const refreshesBefore = bed.as.counters.grants.refresh_token;

    console.error(
      `# latency: ${SMALL_CALLS} small + ${BIG_CALLS} 100 KB calls per mode, ${ROUNDS} interleaved rounds`,
    );
    const lat = await latencies(modes);
    console.error(`# throughput: ${CONCURRENCY} calls in flight for ${THROUGHPUT_MS / 1000} s per mode`);
    const tput = await throughput(modes);
    console.error(`# memory: ${MEMORY_MESSAGES.toLocaleString("en-US")} messages through each proxy`);
    const mem: Record<string, MemoryResult> = {};
    for (const m of modes) if (m.pid) mem[m.name] = await memory(m);

    if (
      bed.as.counters.registrations !== registrationsBefore ||
      bed.as.counters.grants.refresh_token !== refreshesBefore
    ) {
      throw new Error(
        "a proxy registered or refreshed during the run: the comparison would include the authorization server",
      );
    }

    const base = lat.direct;
    const added = (m: ModeName, kind: "small" | "big", p: "p50" | "p99") => lat[m][kind][p] - base[kind][p];
    const ms = (v: number) => `${v.toFixed(3)} ms`;
    const rows = [
      ["", "direct (SDK client)", "tokenkeeper proxy", "mcp-remote"],
      [
        "p50 latency, small",
        ms(base.small.p50),
        ms(lat.tokenkeeper.small.p50),
        ms(lat["mcp-remote"].small.p50),
      ],
      [
        "added p50, small",
        "—",
        ms(added("tokenkeeper", "small", "p50")),
        ms(added("mcp-remote", "small", "p50")),
      ],
      [
        "added p99, small",
        "—",
        ms(added("tokenkeeper", "small", "p99")),
        ms(added("mcp-remote", "small", "p99")),
      ],
      ["p50 latency, 100 KB", ms(base.big.p50), ms(lat.tokenkeeper.big.p50), ms(lat["mcp-remote"].big.p50)],
      [
        "added p50, 100 KB",
        "—",
        ms(added("tokenkeeper", "big", "p50")),
        ms(added("mcp-remote", "big", "p50")),
      ],
      [
        "added p99, 100 KB",
        "—",
        ms(added("tokenkeeper", "big", "p99")),
        ms(added("mcp-remote", "big", "p99")),
      ],
      [
        `throughput (${CONCURRENCY} in flight)`,
        `${tput.direct!.toFixed(0)} calls/s`,
        `${tput.tokenkeeper!.toFixed(0)} calls/s (${((tput.tokenkeeper! / tput.direct!) * 100).toFixed(0)} %)`,
        `${tput["mcp-remote"]!.toFixed(0)} calls/s (${((tput["mcp-remote"]! / tput.direct!) * 100).toFixed(0)} %)`,
      ],
      [
        "RSS before (after warm-up)",
        "—",
        `${mem.tokenkeeper!.baselineMiB} MiB`,
        `${mem["mcp-remote"]!.baselineMiB} MiB`,
      ],
      [
        `RSS after ${MEMORY_MESSAGES.toLocaleString("en-US")} messages (${Math.ceil(MEMORY_MESSAGES / 2).toLocaleString("en-US")} calls)`,
        "—",
        `${mem.tokenkeeper!.afterMiB} MiB (${signed(mem.tokenkeeper!.growthMiB)})`,
        `${mem["mcp-remote"]!.afterMiB} MiB (${signed(mem["mcp-remote"]!.growthMiB)})`,
      ],
      [
        "RSS range while running",
        "—",
        range(mem.tokenkeeper!.samplesMiB),
        range(mem["mcp-remote"]!.samplesMiB),
      ],
      [
        "failed calls (retried)",
        String(failures.direct?.count ?? 0),
        String(failures.tokenkeeper?.count ?? 0),
        String(failures["mcp-remote"]?.count ?? 0),
      ],
      ["stderr written", "—", bytes(modes[1]!.stderrBytes()), bytes(modes[2]!.stderrBytes())],
    ];

    const ourAdded = added("tokenkeeper", "small", "p50");
    const theirAdded = added("mcp-remote", "small", "p50");
    const targets = {
      addedP50AtMostHalfOfMcpRemote: ourAdded <= theirAdded / 2,
      throughputAtLeastMcpRemote: tput.tokenkeeper! >= tput["mcp-remote"]!,
      memoryGrowthUnder10MiB: mem.tokenkeeper!.growthMiB < 10,
    };
    console.log(
      `\n## tokenkeeper proxy vs mcp-remote (Node ${process.version}, ${process.platform}/${process.arch})\n`,
    );
    console.log(table(rows));
    console.log("\nTargets:");
    console.log(
      `  added p50 (small) at most half of mcp-remote's: ${ourAdded.toFixed(3)} ms vs ${theirAdded.toFixed(3)} ms → ${pass(targets.addedP50AtMostHalfOfMcpRemote)}`,
    );
    console.log(
      `  throughput at least mcp-remote's: ${tput.tokenkeeper!.toFixed(0)} vs ${tput["mcp-remote"]!.toFixed(0)} calls/s → ${pass(targets.throughputAtLeastMcpRemote)}`,
    );
    console.log(
      `  memory growth under 10 MiB over ${MEMORY_MESSAGES.toLocaleString("en-US")} messages: ${signed(mem.tokenkeeper!.growthMiB)} → ${pass(targets.memoryGrowthUnder10MiB)}`,
    );

    const report = {
      node: process.version,
      platform: `${process.platform}/${process.arch}`,
      parameters: {
        smallCalls: SMALL_CALLS,
        bigCalls: BIG_CALLS,
        bigBytes: BIG_TEXT.length,
        rounds: ROUNDS,
        concurrency: CONCURRENCY,
        throughputSeconds: THROUGHPUT_MS / 1000,
        memoryMessages: MEMORY_MESSAGES,
      },
      latencyMs: Object.fromEntries(
        Object.entries(lat).map(([k, v]) => [k, { small: roundSummary(v.small), big: roundSummary(v.big) }]),
      ),
      addedLatencyMs: Object.fromEntries(
        (["tokenkeeper", "mcp-remote"] as const).map((m) => [
          m,
          {
            small: { p50: round(added(m, "small", "p50")), p99: round(added(m, "small", "p99")) },
            big: { p50: round(added(m, "big", "p50")), p99: round(added(m, "big", "p99")) },
          },
        ]),
      ),
      throughputCallsPerSecond: Object.fromEntries(Object.entries(tput).map(([k, v]) => [k, round(v, 1)])),
      throughputRelativeToDirect: Object.fromEntries(
        Object.entries(tput).map(([k, v]) => [k, round(v / tput.direct!, 3)]),
      ),
      memory: mem,
      stderrBytes: Object.fromEntries(modes.map((m) => [m.name, m.stderrBytes()])),
      failures,
      targets,
    };
    console.log(`\n${JSON.stringify(report)}`);
    if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    for (const m of modes) await m.close().catch(() => {});
    await bed.close();
    await rm(home, { recursive: true, force: true });
  }
}

function roundSummary(s: Summary) {
  return { n: s.n, p50: round(s.p50), p99: round(s.p99), mean: round(s.mean) };
}

function range(samples: number[]): string {
  return `${Math.min(...samples)}–${Math.max(...samples)} MiB`;
}

function signed(mib: number): string {
  return `${mib >= 0 ? "+" : ""}${mib} MiB`;
}

function bytes(n: number): string {
  return n >= 2 ** 20
    ? `${(n / 2 ** 20).toFixed(1)} MiB`
    : n >= 1024
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${n} B`;
}

function pass(ok: boolean): string {
  return ok ? "met" : "NOT MET";
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
