/**
 * Atomic, durable file replacement: the one way the file store puts bytes on disk.
 *
 * The guarantee, once `atomicWrite(target, data)` resolves: `target` holds exactly `data`, and it
 * survives a crash or power loss of the machine (as far as the disk honours fsync). At every instant
 * before that, a reader that opens `target` sees either the complete previous contents or the
 * complete new contents, never a mix, an empty file or a prefix. How:
 *
 * 1. the data goes to a temp file in the *same directory* (rename is only atomic within one file
 *    system), created with O_EXCL (a unique name we own; never someone else's file or a symlink
 *    planted there) and mode 0600 from the first byte, so a secret is never readable by others;
 * 2. fsync(temp) makes the data durable before it becomes visible: without it, a crash right after
 *    the rename can leave the *new name* pointing at an empty or partial file (ext4 delalloc, XFS);
 * 3. rename(temp, target) swaps the directory entry atomically (POSIX rename(2));
 * 4. fsync(directory) makes the rename itself durable: until then a crash can bring back the old entry.
 *
 * A crash between 1 and 3 leaves a temp file behind. Its name starts with "." and ends in ".tmp"
 * and carries the writer's pid, so readers ignore it and a sweep can remove it once that writer is
 * gone (see parseTempName).
 */
import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomHex } from "../core/random.js";

export interface AtomicWriteOptions {
  /** Permission bits of the new file. Default 0600: the store only writes secrets. */
  mode?: number;
  /**
   * Runs after the temp file is durable and before the rename. Throwing aborts the write (the temp
   * file is removed and the target is untouched). Used to re-check a lease right before publishing,
   * and by crash tests to stop a writer at the worst moment.
   */
  beforeRename?: () => Promise<void>;
}

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const TEMP_NAME = /^\.(.+)\.(\d+)-[0-9a-f]+\.tmp$/;

/** A unique sibling name for a file (or directory) being prepared: `.<base>.<pid>-<random>.tmp`. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}-${randomHex(6)}.tmp`);
}

/** Recognizes a name made by tempPathFor, and which process made it. */
export function parseTempName(entry: string): { base: string; pid: number } | null {
  const m = TEMP_NAME.exec(entry);
  return m ? { base: m[1]!, pid: Number(m[2]) } : null;
}

export async function atomicWrite(
  target: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o600;
  const temp = tempPathFor(target);
  const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, mode);
  let renamed = false;
  try {
    try {
      // The umask can only remove bits from `mode`; set it exactly so the result does not depend on it.
      if (process.platform !== "win32") await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await options.beforeRename?.();
    await rename(temp, target);
    renamed = true;
  } finally {
    if (!renamed) await unlink(temp).catch(() => {});
  }
  await fsyncDirectory(dirname(target));
}

/**
 * Makes entries created, renamed or removed in `dir` durable. Windows cannot open a directory for
 * fsync; NTFS journals metadata itself, so there is nothing more to do there. A few file systems
 * (some network and FUSE ones) reject fsync on directories with EINVAL: they give no stronger
 * guarantee we could ask for, so that is not an error either.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP") throw error;
  } finally {
    await fh.close();
  }
}
