// Where veil keeps its state: $VEIL_HOME, or /var/lib/veil (root) / ~/.veil.
import { homedir } from 'node:os';
import { join } from 'node:path';

export function veilHome(): string {
  const env = process.env['VEIL_HOME'];
  if (env) return env;
  return process.getuid?.() === 0 ? '/var/lib/veil' : join(homedir(), '.veil');
}

/** The state directory of one cluster (lab or real). */
export function clusterDir(cluster: string): string {
  return join(veilHome(), 'clusters', cluster);
}
