/**
 * Recording for the suite-wide secret scan (scripts/secret-scan.mjs). The test servers record the
 * exact secret values they issue (tokens, codes, client secrets); the CLI harnesses and
 * child-process helpers record every output they capture (stdout, stderr, events and skip files,
 * webhook bodies). scripts/run-tests.mjs then looks for every issued value in every output and
 * fails the run on a hit. Exact values, not patterns: a leak of a real token is found whatever it
 * looks like, and nothing that merely resembles a token is flagged.
 *
 * Both go to a run-scoped directory outside the repository (mode 0700, files 0600) named by
 * TOKENKEEPER_TEST_SECRET_SCAN; without it (a test file run on its own) recording is off.
 * Writes are synchronous appends: nothing is lost when a test process exits abruptly.
 */
import { appendFileSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, relative } from "node:path";

export const SCAN_ENV = "TOKENKEEPER_TEST_SECRET_SCAN";

/** What an issued value is (for the report) and whether some outputs may carry it legitimately. */
export type IssuedKind =
  | "access_token"
  | "refresh_token"
  | "id_token"
  | "authorization_code"
  | "device_code"
  | "client_secret"
  | "registration_access_token"
  | "code_verifier"
  | "client_assertion";

/** Values shorter than this are not scanned for (a 16-char random value cannot occur by chance). */
const MIN_SECRET_LENGTH = 16;

function scanDir(): string | undefined {
  return process.env[SCAN_ENV] || undefined;
}

/** The test file this process runs (node --test runs one file per process). */
function source(): string {
  const file = process.argv.find((a) => a.endsWith(".test.ts"));
  return file ? basename(file) : `pid ${process.pid}`;
}

/** Records a secret a test server issued. */
export function recordIssued(kind: IssuedKind, value: unknown): void {
  const dir = scanDir();
  if (!dir || typeof value !== "string" || value.length < MIN_SECRET_LENGTH) return;
  // One value per line: issued values never contain a newline or a tab (checked, not assumed).
  if (/[\t\r\n]/.test(value)) return;
  appendFileSync(join(dir, `issued-${process.pid}.tsv`), `${kind}\t${value}\n`, { mode: 0o600 });
}

/** Records the secrets in a token-endpoint or registration response body. */
export function recordIssuedInBody(body: unknown): void {
  if (!body || typeof body !== "object") return;
  const b = body as Record<string, unknown>;
  for (const kind of [
    "access_token",
    "refresh_token",
    "id_token",
    "device_code",
    "client_secret",
    "registration_access_token",
  ] as const) {
    recordIssued(kind, b[kind]);
  }
}

/** Records the secrets a client sent a token endpoint (verifier, assertion, secret): leaks too. */
export function recordReceivedParams(params: Record<string, unknown> | undefined): void {
  if (!params) return;
  recordIssued("code_verifier", params.code_verifier);
  recordIssued("client_assertion", params.client_assertion);
  recordIssued("client_secret", params.client_secret);
}

/** Records the authorization code in a redirect's Location, if any. */
export function recordIssuedInLocation(location: unknown): void {
  if (typeof location !== "string" || !location.includes("code=")) return;
  try {
    recordIssued("authorization_code", new URL(location, "http://x").searchParams.get("code"));
  } catch {
    // Not a URL: nothing issued in it.
  }
}

export interface OutputOptions {
  /** Kinds this output may carry by design (the stdout of `tokenkeeper token` is an access token). */
  allow?: readonly IssuedKind[];
}

/** Records one captured output (a process's stdout, a file's content) under a readable label. */
export function recordOutput(label: string, text: string | Buffer, options: OutputOptions = {}): void {
  const dir = scanDir();
  if (!dir || text.length === 0) return;
  const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : text;
  const allow = options.allow?.length ? options.allow.join(",") : "-";
  const header = `@@ ${bytes.length} ${allow} ${source()}: ${label.replace(/\s+/g, " ")}\n`;
  appendFileSync(
    join(dir, `outputs-${process.pid}.log`),
    Buffer.concat([Buffer.from(header), bytes, Buffer.from("\n")]),
    {
      mode: 0o600,
    },
  );
}

/**
 * Records every regular file under `root` (events logs, skip files, notification dumps) except
 * the subtrees in `skip`: the token store itself holds secrets by design. Called by harnesses
 * right before they delete their temporary directory.
 */
export function recordOutputFiles(root: string, skip: readonly string[] = []): void {
  if (!scanDir()) return;
  const skipped = new Set(skip.map((s) => join(root, s)));
  const walk = (dir: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry);
      if (skipped.has(path)) continue;
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(path);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && st.size > 0) recordOutput(`file ${relative(root, path)}`, readFileSync(path));
    }
  };
  walk(root);
}

/** The kinds a CLI command's stdout may carry: `token` and `headers` print an access token by design. */
export function cliStdoutAllows(argv: readonly string[]): IssuedKind[] {
  const command = argv.find((a) => !a.startsWith("-"));
  return command === "token" || command === "headers" ? ["access_token"] : [];
}

/** Records a CLI run's stdout and stderr. */
export function recordCliRun(argv: readonly string[], stdout: string, stderr: string, how: string): void {
  const command = argv.find((a) => !a.startsWith("-")) ?? "(none)";
  recordOutput(`${how} \`tokenkeeper ${command}\` stdout`, stdout, { allow: cliStdoutAllows(argv) });
  recordOutput(`${how} \`tokenkeeper ${command}\` stderr`, stderr);
}
