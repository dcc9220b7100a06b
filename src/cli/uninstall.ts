// veil uninstall: stop every agent and give the cluster its plaintext routing back.
import { currentCluster, isLabCluster, openRegistry } from '../control/cluster.js';
import { uninstall } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { labUninstall } from '../lab/agents.js';
import { command } from './flags.js';
import { ui } from './ui.js';

export const { run } = command({
  name: 'veil uninstall',
  usage: ['veil uninstall [--cluster NAME]'],
  about: `On a lab: stops the veil agents on every node, removes the tunnel devices and restores the lab's
plaintext routing. On hosts (agents under systemd): once every agent is stopped, removes the install
settings and what the agents published. Safe to re-run.`,
  examples: ['veil uninstall', 'veil uninstall --cluster demo'],
  async run({ values }) {
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    try {
      console.log(`${ui.info} Uninstalling veil from cluster "${cluster}"`);
      if (isLabCluster(cluster)) await labUninstall(cluster, reg);
      else {
        // Hosts run their agents under systemd: this CLI cannot stop them, and taking the settings
        // away under running agents would leave their tunnels half-managed.
        const running = (await reg.list('Lease')).map((l) => l.metadata.name);
        if (running.length) {
          throw new VeilError('AGENTS_RUNNING', `veil agents still hold their liveness leases on ${running.join(', ')} (running, or stopped less than their lease TTL ago)`,
            "stop them first (on each host: systemctl disable --now veil-agent; then 'ip link del veil_wg0' or 'ip link del veil_ipsec0' gives the host its plaintext routing back), then run 'veil uninstall' again");
        }
        await uninstall(reg);
      }
      console.log(`${ui.ok} veil was uninstalled; traffic between nodes is no longer encrypted.`);
      return 0;
    } finally {
      reg.close();
    }
  },
});
