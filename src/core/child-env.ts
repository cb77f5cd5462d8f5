/**
 * The environment Tokenkeeper hands to processes it starts (the command of `run`, notification
 * commands). Those are other programs: a job, a shell pipeline, a chat hook. They get tokens
 * through the run's endpoint, never the keys to every token, so every variable of ours that
 * carries a secret (or names a file holding one) is removed from what they inherit.
 */

/** Variables whose value is, or unlocks, a secret. */
const SECRET_VARIABLES = [
  // The store's sealing key(s), or the file holding them: they open every record in the store.
  "TOKENKEEPER_KEY",
  "TOKENKEEPER_KEY_FILE",
  // A pre-registered client's secret (login's default --client-secret-env).
  "TOKENKEEPER_CLIENT_SECRET",
  // Webhook URLs commonly embed their credential (chat hooks: the path is the secret).
  "TOKENKEEPER_NOTIFY_WEBHOOK",
] as const;

export interface ChildEnvOptions {
  /** Further variable names to remove (e.g. a login's --client-secret-env). */
  alsoStrip?: readonly string[];
  /** Keep the run endpoint's secret (the `run` child needs it; a notification command does not). */
  keepRunEndpoint?: boolean;
}

/** True when a store URL carries a password (user-info or a `password=` parameter). */
function storeUrlHasPassword(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return url.password !== "" || url.searchParams.has("password");
}

/**
 * `base` without the secret-bearing variables. TOKENKEEPER_STORE is removed only when its URL
 * carries a password: a plain path or password-less URL is configuration a nested
 * `tokenkeeper` may legitimately need.
 */
export function childEnv(base: NodeJS.ProcessEnv, options: ChildEnvOptions = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const name of [...SECRET_VARIABLES, ...(options.alsoStrip ?? [])]) delete env[name];
  if (!options.keepRunEndpoint) delete env.TOKENKEEPER_RUN_SECRET;
  const store = env.TOKENKEEPER_STORE;
  if (store !== undefined && storeUrlHasPassword(store)) delete env.TOKENKEEPER_STORE;
  return env;
}
