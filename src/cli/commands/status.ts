/**
 * `tokenkeeper status [NAME] [--json]`: what Tokenkeeper knows about each connector — health,
 * access-token time left, refresh-token age and known expiry, last refresh outcome, rotation
 * count, clock skew, store location. Read-only: nothing is refreshed, no server is contacted.
 *
 * No secret can appear: the JSON is built field by field from non-secret parts of the record
 * (never by serializing the record), and keys avoid names like `access_token` on purpose.
 */

import { formatDuration, isoTime } from "../../core/duration.js";
import { ConfigError, EXIT, NotFoundError, StoreCorruptError } from "../../core/errors.js";
import { assertConnectorName, type ConnectorRecord } from "../../core/record.js";
import { scrubText } from "../../core/secret.js";
import { refreshTokenExpiry } from "../../manager/view.js";
import { parseFlags, scheduledCommand } from "../args.js";
import type { CliContext } from "../context.js";
import { openCliStore } from "../runtime.js";

const USAGE = `Usage: tokenkeeper status [NAME] [--json] [--check | --quiet] [--store URL]

Shows every connector (or NAME): health, access-token time left, refresh-token age and known
expiry, last refresh and its outcome, refresh and rotation counts, clock skew, and the store.
Never contacts a server and never prints a secret.

--json prints {"store": "…", "connectors": [ … ]} (fields in docs/unattended.md), plus
"problems": [ … ] naming damaged records, which status reports but never moves.

  --check   the exit code says whether every connector is healthy (as \`gh auth status\` does):
            77 when one needs a human to log in again, 75 when one's refresh is failing
  --quiet   --check, printing only the connectors that need attention (nothing when all are
            healthy): for cron, which mails a job's output

Exit codes: 0 ok, 78 unknown connector or bad flags, 74 store unreadable or a record damaged;
with --check or --quiet also 77 and 75 as above.`;

export const statusCommand = scheduledCommand({
  name: "status",
  summary: "show connectors' health, token lifetimes and refresh history (no secrets)",
  usage: USAGE,
  run,
});

export interface ConnectorStatus {
  name: string;
  mcp_url: string;
  issuer: string;
  grant: string;
  client_id: string;
  scope: string | null;
  health: string;
  has_tokens: boolean;
  access_token_expires_at: string | null;
  /** Negative once expired; null when the server stated no lifetime. */
  access_token_ttl_ms: number | null;
  /**
   * The expiry the server stated, when the clock-skew correction made access_token_expires_at
   * earlier (null otherwise). Every decision uses access_token_expires_at.
   */
  access_token_granted_expires_at: string | null;
  refresh_token_present: boolean;
  refresh_token_issued_at: string | null;
  refresh_token_age_ms: number | null;
  refresh_token_expires_at: string | null;
  last_refresh_at: string | null;
  last_refresh_outcome: string | null;
  last_error: { code: string; error: string | null; description: string | null; at: string } | null;
  refresh_count: number;
  rotation_count: number;
  clock_skew_ms: number | null;
  reauth: { reason: string; since: string; action: string; required_scope: string | null } | null;
  notified_at: string | null;
  expiry_warned_at: string | null;
  updated_at: string;
}

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    json: { type: "boolean" },
    check: { type: "boolean" },
    quiet: { type: "boolean" },
    store: { type: "string" },
  });
  const check = values.check === true || values.quiet === true;
  if (positionals.length > 1) throw new ConfigError("give at most one connector NAME");
  const only = positionals[0];
  if (only !== undefined) assertConnectorName(only);

  const store = await openCliStore(values.store, ctx);
  try {
    const names = only !== undefined ? [only] : await store.list();
    const now = ctx.clock.now();
    const statuses: ConnectorStatus[] = [];
    // Damaged records are reported, not repaired: status is read-only, so the file stays where
    // it is and the next command that writes the connector moves it aside.
    const damaged: StoreCorruptError[] = [];
    for (const name of names) {
      let stored: Awaited<ReturnType<typeof store.get>>;
      try {
        stored = await store.get(name, { readOnly: true });
      } catch (error) {
        if (!(error instanceof StoreCorruptError) || only !== undefined) throw error;
        damaged.push(error);
        continue;
      }
      if (!stored) throw new NotFoundError(name, store.location);
      statuses.push(connectorStatus(stored.record, now));
    }
    const problems = damaged.map((e) => ({
      connector: e.connector ?? null,
      code: e.code,
      message: e.message,
      file: typeof e.fields.file === "string" ? e.fields.file : null,
    }));
    if (values.json) {
      ctx.stdout.write(
        `${JSON.stringify({ store: store.location, connectors: statuses, ...(problems.length ? { problems } : {}) })}\n`,
      );
    } else if (values.quiet) {
      for (const s of statuses.filter((x) => x.health !== "ok")) ctx.stdout.write(`${describe(s)}\n`);
    } else {
      ctx.stdout.write(`store: ${store.location}\n`);
      if (statuses.length === 0 && problems.length === 0)
        ctx.stdout.write("no connectors (add one with `tokenkeeper login <mcp-server-url> --name NAME`)\n");
      for (const s of statuses) ctx.stdout.write(`\n${describe(s)}\n`);
    }
    for (const p of problems) ctx.stderr.write(`tokenkeeper: ${p.code}: ${p.message}\n`);
    if (problems.length > 0) return EXIT.ioError;
    return check ? healthExitCode(statuses) : EXIT.ok;
  } finally {
    await store.close();
  }
}

/** With --check: the worst health decides, in the scheduler's codes (77 a human, 75 may pass). */
export function healthExitCode(statuses: readonly Pick<ConnectorStatus, "health">[]): number {
  if (statuses.some((s) => s.health === "reauth_required")) return EXIT.reauth;
  if (statuses.some((s) => s.health === "degraded")) return EXIT.transient;
  return EXIT.ok;
}

/** Never throws, whatever the store holds: status is how a person looks at a broken record. */
const iso = isoTime;

export function connectorStatus(r: ConnectorRecord, now: number): ConnectorStatus {
  const t = r.tokens;
  const s = r.state;
  const rtIssued = t?.refreshToken ? (t.refreshTokenIssuedAt ?? null) : null;
  return {
    name: r.name,
    mcp_url: r.server.mcpUrl,
    issuer: r.server.issuer,
    grant: r.grant,
    client_id: r.client.clientId,
    scope: t?.scope ?? r.scope ?? null,
    health: s.health,
    has_tokens: t !== null,
    access_token_expires_at: iso(t?.expiresAt),
    access_token_ttl_ms: t?.expiresAt == null || iso(t.expiresAt) === null ? null : t.expiresAt - now,
    access_token_granted_expires_at: iso(t?.grantedExpiresAt),
    refresh_token_present: Boolean(t?.refreshToken),
    refresh_token_issued_at: iso(rtIssued),
    refresh_token_age_ms: rtIssued === null ? null : now - rtIssued,
    refresh_token_expires_at: iso(refreshTokenExpiry(r)),
    last_refresh_at: iso(s.lastRefreshAt),
    last_refresh_outcome: s.lastRefreshOutcome ?? null,
    last_error: s.lastError
      ? {
          code: s.lastError.code,
          error: s.lastError.error ?? null,
          description: s.lastError.description ? scrubText(s.lastError.description, 300) : null,
          at: iso(s.lastError.at) ?? "unknown",
        }
      : null,
    refresh_count: s.refreshCount,
    rotation_count: s.rotationCount,
    clock_skew_ms: s.clockSkewMs ?? null,
    reauth: s.reauth
      ? {
          reason: s.reauth.reason,
          since: iso(s.reauth.since) ?? "unknown",
          action: s.reauth.action,
          required_scope: s.reauth.requiredScope ?? null,
        }
      : null,
    notified_at: iso(s.notifiedAt),
    expiry_warned_at: iso(s.expiryWarnedAt),
    updated_at: iso(r.updatedAt) ?? "unknown",
  };
}

function describe(s: ConnectorStatus): string {
  const lines = [`${s.name}  [${s.health}]  ${s.mcp_url}`];
  const ttl = s.access_token_ttl_ms;
  lines.push(
    `  access token   ${!s.has_tokens ? "none" : ttl === null ? "no stated expiry" : ttl > 0 ? `${formatDuration(ttl)} left (until ${s.access_token_expires_at})` : `expired ${formatDuration(-ttl)} ago`}`,
  );
  if (s.access_token_granted_expires_at && s.access_token_expires_at) {
    const cut = Date.parse(s.access_token_granted_expires_at) - Date.parse(s.access_token_expires_at);
    lines.push(
      `                 ${formatDuration(cut)} earlier than the server stated (${s.access_token_granted_expires_at}): clock skew`,
    );
  }
  if (s.grant === "client_credentials") lines.push("  refresh token  not used (client credentials)");
  else if (!s.refresh_token_present) lines.push("  refresh token  none");
  else {
    const age =
      s.refresh_token_age_ms === null
        ? "age unknown"
        : `issued ${formatDuration(s.refresh_token_age_ms)} ago`;
    lines.push(
      `  refresh token  ${age}${s.refresh_token_expires_at ? `, expires ${s.refresh_token_expires_at}` : ", no known expiry"}`,
    );
  }
  lines.push(
    `  last refresh   ${s.last_refresh_at ? `${s.last_refresh_at} (${s.last_refresh_outcome ?? "?"})` : "never"}; ${s.refresh_count} refreshes, ${s.rotation_count} rotations`,
  );
  if (s.last_error && s.last_refresh_outcome !== "ok") {
    lines.push(
      `  last error     ${s.last_error.code}${s.last_error.error ? ` (${s.last_error.error})` : ""}${s.last_error.description ? `: ${s.last_error.description}` : ""}`,
    );
  }
  if (s.clock_skew_ms !== null) {
    // The Date header and JWT iat have one-second resolution: below that, the sign is noise.
    const skew = Math.abs(s.clock_skew_ms);
    const text =
      skew < 1_000
        ? "within 1s (the server's clock is only read to the second)"
        : `${s.clock_skew_ms > 0 ? "server ahead" : "server behind"} by ${formatDuration(skew)}`;
    lines.push(`  clock skew     ${text}`);
  }
  if (s.reauth)
    lines.push(`  NEEDS A HUMAN  ${s.reauth.reason} since ${s.reauth.since}\n  → ${s.reauth.action}`);
  return lines.join("\n");
}
