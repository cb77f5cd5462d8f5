/**
 * `tokenkeeper logout NAME [--revoke]`: optionally revokes the grant at the authorization server
 * (RFC 7009), then removes the connector. The refresh lock is held throughout, so no refresh
 * can rotate the refresh token between its revocation and the removal. When the revocation fails
 * the connector is kept (unless --force): deleting it would hide a grant that is still alive.
 */
import { ConflictError, EXIT, NotFoundError } from "../../core/errors.js";
import { assertConnectorName, type ConnectorRecord } from "../../core/record.js";
import { grantRevoked, type RevocationOutcome, revokeGrant, type TokenKind } from "../../oauth/revocation.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import { type CliContext, networkDeps } from "../context.js";
import { writeLine, writeWireJson } from "../output.js";
import { openCliStore } from "../runtime.js";

const USAGE = `Usage: tokenkeeper logout NAME [--revoke [--force]] [--store URL] [--json]

Removes a connector. With --revoke, first revokes its refresh token (and access token) at the
authorization server (RFC 7009). If revocation does not succeed (server unreachable or refusing,
no revocation endpoint) the connector is KEPT, so you can try again, and the tokens still live at
the server are named; --force removes it anyway (the grant then lives on until it expires).
Exit codes: 0 removed, 64 usage, 75 busy or revocation server unreachable (try again),
76 the server refused the revocation, 78 no such connector or no revocation endpoint.`;

const LOCK_LEASE_MS = 60_000;
const LOCK_WAIT_MS = 15_000;

export const logoutCommand = interactiveCommand({
  name: "logout",
  summary: "remove a connector, optionally revoking its grant at the server",
  usage: USAGE,
  run,
});

/** The exit code of a failed revocation: try again later (75), the server said no (76), or it cannot (78). */
function failedRevocationExit(outcomes: RevocationOutcome[]): number {
  const failed = outcomes.filter((r) => !r.revoked && r.reason !== "unsupported_token_type");
  if (failed.some((r) => r.reason === "unreachable")) return EXIT.transient;
  if (failed.some((r) => r.reason === "refused")) return EXIT.protocol;
  return EXIT.config;
}

/** What may still work at the server after a failed revocation, for the person to act on. */
function stillLive(record: ConnectorRecord, outcomes: RevocationOutcome[], now: number): string[] {
  const live: string[] = [];
  const t = record.tokens;
  if (!t) return live;
  const failed = (kind: TokenKind) => {
    const o = outcomes.find((r) => r.tokenType === kind);
    // Not attempted (no endpoint stops the sequence) counts as not revoked.
    return !o?.revoked;
  };
  if (t.refreshToken && failed("refresh_token")) {
    live.push(
      `the refresh token${t.refreshTokenExpiresAt ? ` (until ${new Date(t.refreshTokenExpiresAt).toISOString()})` : " (no known expiry)"}`,
    );
  }
  if ((t.expiresAt === null || t.expiresAt > now) && failed("access_token")) {
    live.push(
      `the access token${t.expiresAt !== null ? ` (until ${new Date(t.expiresAt).toISOString()})` : ""}`,
    );
  }
  return live;
}

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    revoke: { type: "boolean" },
    force: { type: "boolean" },
    store: { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UsageError("give exactly one connector NAME");
  if (values.force && !values.revoke) throw new UsageError("--force only makes sense with --revoke");
  const name = positionals[0]!;
  assertConnectorName(name);

  const store = await openCliStore(values.store, ctx);
  try {
    const lock = await store.lock(name, { leaseMs: LOCK_LEASE_MS, waitMs: LOCK_WAIT_MS, signal: ctx.signal });
    let revocations: RevocationOutcome[] = [];
    let record: ConnectorRecord | undefined;
    let removed = false;
    try {
      // Re-read under the lock until the delete is fenced by the version we revoked: a writer
      // that does not take the lock (a login) could still slip in between.
      for (let attempt = 0; ; attempt++) {
        const stored = await store.get(name);
        if (!stored) throw new NotFoundError(name, store.location);
        record = stored.record;
        if (values.revoke) {
          revocations = await revokeGrant(stored.record, networkDeps(ctx));
          // A grant that may still be alive is not forgotten locally unless asked: the record is
          // the only way to try the revocation again.
          if (revocations.length > 0 && !grantRevoked(revocations) && !values.force) break;
        }
        try {
          removed = await store.delete(name, stored.version);
          break;
        } catch (error) {
          if (!(error instanceof ConflictError) || attempt >= 2) throw error;
        }
      }
    } finally {
      await lock.release();
    }

    const issuer = record!.server.issuer;
    const accessTokenExpiresAt = record!.tokens?.expiresAt ?? null;
    const warnings: string[] = [];
    const revoked = values.revoke ? grantRevoked(revocations) : null;
    const live = values.revoke && revoked === false ? stillLive(record!, revocations, ctx.clock.now()) : [];
    if (!values.revoke) {
      warnings.push(
        `the grant was not revoked: it may still be alive at ${issuer} until it expires (use --revoke to end it there)`,
      );
    } else if (revocations.length === 0) {
      warnings.push("there was no live token to revoke");
    } else if (!revoked) {
      const failed = revocations
        .filter((r) => !r.revoked && r.reason !== "unsupported_token_type")
        .map((r) => `${r.tokenType}: ${r.detail ?? r.reason}`);
      warnings.push(
        `revocation at ${issuer} did not succeed (${failed.join("; ")}); still live at the server: ${live.join(" and ") || "nothing known"}`,
      );
      warnings.push(
        removed
          ? "the connector was removed anyway (--force): the grant lives on at the server until it expires"
          : `the connector was kept so the revocation can be retried: run \`tokenkeeper logout ${name} --revoke\` again, or add --force to remove it anyway`,
      );
    }
    const notes: string[] = [];
    if (revocations.some((r) => r.tokenType === "access_token" && r.reason === "unsupported_token_type")) {
      notes.push(
        `the server cannot revoke the access token itself (self-contained); it stays valid until it expires${
          accessTokenExpiresAt !== null ? ` at ${new Date(accessTokenExpiresAt).toISOString()}` : ""
        }`,
      );
    }

    const code = removed ? EXIT.ok : failedRevocationExit(revocations);
    if (values.json) {
      writeWireJson(ctx, {
        ok: removed,
        connector: name,
        removed,
        revoked,
        revocations,
        ...(values.revoke ? { still_live: live } : {}),
        warnings,
        notes,
        ...(removed ? {} : { exit_code: code }),
      });
    } else {
      writeLine(ctx.stdout, removed ? `Removed connector "${name}".` : `Kept connector "${name}".`);
      for (const r of revocations)
        if (r.revoked) writeLine(ctx.stdout, `Revoked its ${r.tokenType.replace("_", " ")} at ${issuer}.`);
      for (const n of notes) writeLine(ctx.stdout, `Note: ${n}.`);
    }
    for (const w of warnings) writeLine(ctx.stderr, `WARNING: ${w}`);
    return code;
  } finally {
    await store.close();
  }
}
