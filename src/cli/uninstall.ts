// veil uninstall: stop every agent and give the cluster its plaintext routing back.
import { parseArgs } from 'node:util';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { uninstall } from '../agent/installer.js';
import { ui } from './ui.js';

const HELP = `Usage: veil uninstall [--cluster NAME]

Stops the veil agents on every node, removes the tunnel devices and restores the lab's plaintext
routing. Safe to re-run.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) { console.log(HELP); return 0; }
  const cluster = currentCluster(values.cluster);
  const reg = openRegistry(cluster);
  try {
    console.log(`${ui.info} Uninstalling veil from cluster "${cluster}"`);
    await uninstall(cluster, reg);
    console.log(`${ui.ok} veil was uninstalled; traffic between nodes is no longer encrypted.`);
    return 0;
  } finally {
    reg.close();
  }
}
