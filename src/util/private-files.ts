// Key material (private keys, pre-shared keys, passwords, sequence marks, the registry's data) is
// for root alone: files 0600, the directories holding them 0700. Explicit modes rather than trust
// in the umask, and an existing directory made by an older version is narrowed too.
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from './durable-file.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Makes dir (and missing parents) 0700, and narrows it to 0700 if it exists already. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}

/** Writes path atomically as a 0600 file (a file it replaces goes with its mode); a missing parent is made 0700. */
export function writePrivateFile(path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
  writeFileAtomic(path, content, { mode: PRIVATE_FILE_MODE });
  chmodSync(path, PRIVATE_FILE_MODE); // the umask could only narrow it further; say it exactly
}

/** Takes group and other bits off an existing file or directory (0644 → 0600, 0755 → 0700). */
export function narrowToPrivate(path: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) chmodSync(path, mode & 0o700);
}
