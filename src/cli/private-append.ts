/**
 * Opening a file a command appends to (the events log, --skip-file) without trusting what is
 * already at that path. These files live where a job's operator points them, often a shared
 * directory such as /tmp or a log folder:
 *   - O_NOFOLLOW: a symlink planted at the path by another user must not redirect our writes into
 *     a file of their choosing (or one of ours they want clobbered);
 *   - O_NONBLOCK + a regular-file check: a FIFO planted there must not block the command forever;
 *   - created 0600, and an existing file of ours with a looser mode is tightened: the records
 *     name servers, connectors and failure reasons, which are nobody else's business.
 * A file owned by someone else is refused: we could neither tighten it nor trust who reads it.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from "node:fs";
import { ConfigError } from "../core/errors.js";

const FLAGS =
  constants.O_WRONLY |
  constants.O_APPEND |
  constants.O_CREAT |
  (constants.O_NOFOLLOW ?? 0) |
  (constants.O_NONBLOCK ?? 0);

/**
 * A descriptor open for appending to `path`. ConfigError (exit 78) naming `what` and the reason
 * when the path is a symlink, not a regular file, or another user's file.
 */
export function openPrivateAppend(path: string, what: string): number {
  let fd: number;
  try {
    fd = openSync(path, FLAGS, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    // Linux answers O_NOFOLLOW on a symlink with ELOOP (some BSDs with EMLINK).
    const why = code === "ELOOP" || code === "EMLINK" ? "it is a symbolic link, which is refused" : code;
    throw new ConfigError(`cannot open ${what} ${path} for appending (${why})`, { file: path });
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw new ConfigError(`${what} ${path} is not a regular file`, { file: path });
    if (process.platform !== "win32") {
      const uid = process.getuid?.();
      if (uid !== undefined && info.uid !== uid)
        throw new ConfigError(
          `${what} ${path} belongs to another user (uid ${info.uid}); refusing to write it`,
          {
            file: path,
          },
        );
      if ((info.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    }
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
