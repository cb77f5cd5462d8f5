/**
 * `tokenkeeper logout NAME [--revoke]`: optionally revokes the grant at the authorization server
 * (RFC 7009), then removes the connector. The refresh lock is held throughout, so no refresh
 * can rotate the refresh token between its revocation and the removal.
 */
import { ConflictError, EXIT, NotFoundError } from "../../core/errors.js";
import { assertConnectorName } from "../../core/record.js";
import { grantRevoked, type RevocationOutcome, revokeGrant } from "../../oauth/revocation.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import type { CliContext } from "../context.js";
import { writeJson, writeLine } from "../output.js";
import { openCliStore } from "../runtime.js";

const USAGE = `Usage: tokenkeeper logout NAME [--revoke] [--store URL] [--json]

Removes a connector. With --revoke, first revokes its refresh token (and access token) at the
authorization server (RFC 7009). If revocation is impossible (no endpoint, server unreachable)
the connector is still removed and a warning says the grant may still be alive.
Exit codes: 0 removed, 64 usage, 75 busy (another process holds the connector's lock), 78 no such connector.`;

const LOCK_LEASE_MS = 60_000;
const LOCK_WAIT_MS = 15_000;

export const logoutCommand = interactiveCommand({
  name: "logout",
  summary: "remove a connector, optionally revoking its grant at the server",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    revoke: { type: "boolean" },
    store: { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UsageError("give exactly one connector NAME");
  const name = positionals[0]!;
  assertConnectorName(name);

  const store = await openCliStore(values.store, ctx);
  try {
    const lock = await store.lock(name, { leaseMs: LOCK_LEASE_MS, waitMs: LOCK_WAIT_MS, signal: ctx.signal });
    let revocations: RevocationOutcome[] = [];
    let issuer = "";
    let accessTokenExpiresAt: number | null = null;
    try {
      // Re-read under the lock until the delete is fenced by the version we revoked: a writer
      // that does not take the lock (a login) could still slip in between.
      for (let attempt = 0; ; attempt++) {
        const stored = await store.get(name);
        if (!stored) throw new NotFoundError(name, store.location);
        issuer = stored.record.server.issuer;
        accessTokenExpiresAt = stored.record.tokens?.expiresAt ?? null;
        if (values.revoke) {
          revocations = await revokeGrant(stored.record, {
            clock: ctx.clock,
            signal: ctx.signal,
            ...(ctx.fetch ? { fetch: ctx.fetch } : {}),
          });
        }
        try {
          await store.delete(name, stored.version);
          break;
        } catch (error) {
          if (!(error instanceof ConflictError) || attempt >= 2) throw error;
        }
      }
    } finally {
      await lock.release();
    }

    const warnings: string[] = [];
    const revoked = values.revoke ? grantRevoked(revocations) : null;
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
        `revocation at ${issuer} did not succeed (${failed.join("; ")}): the grant may still be alive until it expires`,
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

    if (values.json) {
      writeJson(ctx, { ok: true, connector: name, removed: true, revoked, revocations, warnings, notes });
    } else {
      writeLine(ctx.stdout, `Removed connector "${name}".`);
      for (const r of revocations)
        if (r.revoked) writeLine(ctx.stdout, `Revoked its ${r.tokenType.replace("_", " ")} at ${issuer}.`);
      for (const n of notes) writeLine(ctx.stdout, `Note: ${n}.`);
    }
    for (const w of warnings) writeLine(ctx.stderr, `WARNING: ${w}`);
    return EXIT.ok;
  } finally {
    await store.close();
  }
}
