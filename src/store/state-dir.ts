/**
 * Where the file store lives by default. A pure function of the environment, so every platform's
 * answer is testable on any platform.
 *
 * Tokens are state, not configuration or cache: they change on their own (rotation) and must
 * survive reboots, so on Linux they go under the XDG *state* directory, not ~/.config or ~/.cache.
 */
import { posix, win32 } from "node:path";
import { ConfigError } from "../core/errors.js";

export type Env = Readonly<Record<string, string | undefined>>;

/** An unset and an empty variable mean the same thing (XDG Base Directory spec). */
function nonEmpty(value: string | undefined): string | undefined {
  return value && value.length > 0 ? value : undefined;
}

/**
 * `TOKENKEEPER_HOME` when set; otherwise
 * - Linux and other Unixes: `$XDG_STATE_HOME/tokenkeeper`, else `~/.local/state/tokenkeeper`;
 * - macOS: `~/Library/Application Support/tokenkeeper`;
 * - Windows: `%LOCALAPPDATA%\tokenkeeper` (local, not roaming: tokens belong to this machine).
 *
 * `home` defaults to `HOME` (`USERPROFILE` on Windows); pass `os.homedir()` to also consult the
 * password database. Throws ConfigError when no location can be derived.
 */
export function defaultStateDir(
  env: Env,
  platform: NodeJS.Platform = process.platform,
  home?: string,
): string {
  const explicit = nonEmpty(env.TOKENKEEPER_HOME);
  if (explicit) return explicit;

  if (platform === "win32") {
    const local = nonEmpty(env.LOCALAPPDATA);
    if (local) return win32.join(local, "tokenkeeper");
    const profile = nonEmpty(home) ?? nonEmpty(env.USERPROFILE);
    if (profile) return win32.join(profile, "AppData", "Local", "tokenkeeper");
    throw new ConfigError("cannot find a directory for tokens: set TOKENKEEPER_HOME or LOCALAPPDATA");
  }

  const userHome = nonEmpty(home) ?? nonEmpty(env.HOME);
  if (platform === "darwin") {
    if (userHome) return posix.join(userHome, "Library", "Application Support", "tokenkeeper");
    throw new ConfigError("cannot find a directory for tokens: set TOKENKEEPER_HOME or HOME");
  }

  // The XDG spec says a relative path in these variables is invalid and must be ignored.
  const xdg = nonEmpty(env.XDG_STATE_HOME);
  if (xdg && posix.isAbsolute(xdg)) return posix.join(xdg, "tokenkeeper");
  if (userHome) return posix.join(userHome, ".local", "state", "tokenkeeper");
  throw new ConfigError("cannot find a directory for tokens: set TOKENKEEPER_HOME, XDG_STATE_HOME or HOME");
}
