/**
 * A login, start to end: the OAuth flow builds the record (oauth/login.ts authorize), and the
 * manager saves it the one way every login is saved (login-save.ts: under the refresh lock,
 * merged with whatever was written while the person was in the browser).
 */
import { authorize, type LoginDeps, type LoginRequest, type LoginResult, summarize } from "../oauth/login.js";
import { saveLogin } from "./login-save.js";

export type { LoginDeps, LoginRequest, LoginResult } from "../oauth/login.js";

export async function login(request: LoginRequest, deps: LoginDeps): Promise<LoginResult> {
  const authorized = await authorize(request, deps);
  const saved = await saveLogin(deps.store, authorized.record, authorized.expectedVersion, {
    clock: deps.clock,
    ...(deps.signal ? { signal: deps.signal } : {}),
    ...(deps.note ? { note: deps.note } : {}),
  });
  return {
    record: saved.record,
    version: saved.version,
    summary: summarize(saved.record, authorized.replacedExisting),
    discovery: authorized.discovery,
  };
}
