// Which veil this process runs: the version in its package's package.json. An agent reports it (log,
// status API, node object), so an upgrade shows which build each node runs.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let read: string | undefined;

/** Read once: a process runs one build (an upgrade is a restart), and the agent's status check asked every 2 s. */
export function veilVersion(): string {
  return (read ??= readVersion());
}

function readVersion(): string {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), '../../../package.json'); // dist/src/util -> the package root
  try { return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version; } catch { return 'unknown'; }
}
