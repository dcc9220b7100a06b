// Replacing a file so that readers, and a crash, see the old contents or the new, never a torn
// mix: write a temporary file beside it, then rename it over the old one. The durable form also
// fsyncs the file before the rename and the directory after it, so that once it returns the new
// contents survive a machine crash; without those fsyncs a crash of the machine (not of the
// process) may bring the old file back, or an empty one.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';

export interface ReplaceOptions {
  /** Permissions of a newly created file (before the umask). Default 0o666, as writeFileSync. */
  mode?: number;
}

/**
 * Replaces `path` with `content` and makes it durable (file and directory fsync'd): for state
 * whose loss in a machine crash does harm (the cluster's config, the embedded registry's events).
 */
export function writeFileDurable(path: string, content: string | Uint8Array, options: ReplaceOptions = {}): void {
  replaceFile(path, content, options.mode ?? 0o666, true);
}

/**
 * Replaces `path` with `content` atomically but without fsync: only for files that a machine
 * crash may lose, because they are rebuilt from a durable source or mean nothing after a reboot.
 */
export function writeFileAtomic(path: string, content: string | Uint8Array, options: ReplaceOptions = {}): void {
  replaceFile(path, content, options.mode ?? 0o666, false);
}

function replaceFile(path: string, content: string | Uint8Array, mode: number, durable: boolean): void {
  const dot = path.lastIndexOf('/');
  // Unique per writer: several processes may replace the same file at once (the last rename wins).
  const tmp = `${path.slice(0, dot + 1)}.${path.slice(dot + 1)}.${process.pid}.${randomUUID()}.tmp`;
  try {
    const fd = openSync(tmp, 'w', mode);
    try {
      writeFileSync(fd, content);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* it was never created */ }
    throw e;
  }
  if (durable) syncDirectory(dirname(path));
}

/** Makes a rename or a new name in `dir` durable. */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
