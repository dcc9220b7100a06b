// veil uninstall: stop every agent and give the cluster its plaintext routing back.
import { currentCluster, openRegistry } from '../control/cluster.js';
import { labUninstall } from '../lab/agents.js';
import { command } from './flags.js';
import { ui } from './ui.js';

export const { run } = command({
  name: 'veil uninstall',
  usage: ['veil uninstall [--cluster NAME]'],
  about: `Stops the veil agents on every node, removes the tunnel devices and restores the lab's plaintext
routing. Safe to re-run.`,
  examples: ['veil uninstall', 'veil uninstall --cluster demo'],
  async run({ values }) {
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    try {
      console.log(`${ui.info} Uninstalling veil from cluster "${cluster}"`);
      await labUninstall(cluster, reg);
      console.log(`${ui.ok} veil was uninstalled; traffic between nodes is no longer encrypted.`);
      return 0;
    } finally {
      reg.close();
    }
  },
});
