/**
 * The reauth_required state a connector record carries, as the typed error every surface
 * throws. Pure: the state is written by the token manager when a refresh meets a dead grant
 * (see transitions.ts, which holds the one shape shared by record, error and event).
 */
import type { ReauthRequiredError } from "../core/errors.js";
import type { ConnectorRecord } from "../core/record.js";
import { reauthError, reauthFromRecord } from "./transitions.js";

export function reauthErrorFromRecord(record: ConnectorRecord): ReauthRequiredError | undefined {
  const reauth = reauthFromRecord(record);
  return reauth ? reauthError(reauth) : undefined;
}
