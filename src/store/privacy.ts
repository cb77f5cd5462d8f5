/**
 * The privacy rule for state files and directories, shared by the file store and the CLI's
 * read-only fast path (src/cli/fast-token.ts), so both refuse exactly the same things.
 */
/**
 * Decides whether a file or directory is private enough to trust. Pure; `uid` is undefined where
 * POSIX ownership does not apply (Windows, where the per-user profile directory carries the ACLs).
 */
export function privacyProblem(
  st: { mode: number; uid: number },
  uid: number | undefined,
): "owner" | "mode" | null {
  if (uid === undefined) return null;
  if (st.uid !== uid) return "owner";
  if ((st.mode & 0o077) !== 0) return "mode";
  return null;
}
