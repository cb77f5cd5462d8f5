/**
 * The reauth_required state a connector record carries, as the typed error every surface
 * throws. Pure: the state is written by the token manager when a refresh meets a dead grant.
 */
import { type ReauthReason, ReauthRequiredError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";

export function reauthErrorFromRecord(record: ConnectorRecord): ReauthRequiredError | undefined {
  const reauth = record.state.reauth;
  if (record.state.health !== "reauth_required" || !reauth) return undefined;
  return new ReauthRequiredError({
    connector: record.name,
    reason: reauth.reason as ReauthReason,
    since: reauth.since,
    action: reauth.action,
    ...(reauth.serverError ? { serverError: reauth.serverError } : {}),
    ...(reauth.serverErrorDescription ? { serverErrorDescription: reauth.serverErrorDescription } : {}),
    ...(reauth.requiredScope ? { requiredScope: reauth.requiredScope } : {}),
  });
}
