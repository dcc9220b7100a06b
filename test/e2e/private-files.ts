// What a lab and its agents wrote that holds key material, and whether only root can read it:
// files 0600 (no group or other bit), the directories holding them 0700.
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Files that hold keys, passwords or what derives from them, by name. */
const KEY_FILE = /(^veil_wg0\.key(\.next|\.previous)?$)|(^esp-sequence-marks\.json$)|(^api-key\.pem$)|(^agent\.yaml$)|(\.password$)|(\.key$)|(^config$)|(^wireguard-key-rotation)/;

/** Every regular file under dir (no symlinks followed). */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.isFile() ? [p] : [];
  });
}

/** Inside an etcd member's data dir (etcd's db, WAL and snapshots hold every secret). */
const inEtcdData = (path: string) => /\/veil-etcd-\d+\.data\//.test(path);

export interface KeyMaterialReport {
  /** Key files found, relative to the root. */
  found: string[];
  /** Each file or directory that others can read, with its mode. */
  problems: string[];
}

/** Checks every key file under root (and root itself) for group/other bits, and their directories. */
export function keyMaterialReport(root: string, extraFiles: string[] = []): KeyMaterialReport {
  const files = [...walk(root).filter((p) => KEY_FILE.test(basename(p)) || inEtcdData(p)), ...extraFiles];
  const problems: string[] = [];
  const mode = (p: string) => statSync(p).mode & 0o777;
  const dirs = new Set([root, ...files.filter((f) => f.startsWith(root + '/')).map((f) => dirname(f))]);
  for (const f of files) if (mode(f) & 0o077) problems.push(`file ${f} is 0${mode(f).toString(8)}, want 0600`);
  for (const d of dirs) if (mode(d) & 0o077) problems.push(`directory ${d} is 0${mode(d).toString(8)}, want 0700`);
  return { found: files.map((f) => f.startsWith(root + '/') ? f.slice(root.length + 1) : f), problems };
}
