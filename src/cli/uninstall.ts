// veil uninstall: stop every agent and give the cluster its plaintext routing back.
import { currentCluster, isLabCluster, openRegistry } from '../control/cluster.js';
import { uninstall } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { labUninstall } from '../lab/agents.js';
import { command } from './flags.js';
import { defaultSettings } from '../agent/settings.js';
import { DEFAULT_NAMESPACE } from '../agent/kubernetes-manifests.js';
import { ui } from './ui.js';

export const { run } = command({
  name: 'veil uninstall',
  usage: ['veil uninstall [--cluster NAME]', 'veil uninstall --kubernetes [--kubeconfig FILE] [--context NAME] [--namespace NS]'],
  about: `On a lab: stops the veil agents on every node, removes the tunnel devices and restores the lab's
plaintext routing. On hosts (agents under systemd): once every agent is stopped, removes the install
settings and what the agents published. Safe to re-run.

With --kubernetes: deletes the DaemonSet and everything install applied, the agents' Leases and their
annotations on the Nodes. Your IPsec Secret stays (and its namespace with it).`,
  flags: {
    kubernetes: { type: 'boolean', help: 'uninstall from a Kubernetes cluster' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'with --kubernetes: the kubeconfig' },
    context: { type: 'string', value: 'NAME', help: 'with --kubernetes: the kubeconfig context' },
    namespace: { type: 'string', value: 'NS', help: `with --kubernetes: where veil runs (default ${DEFAULT_NAMESPACE})` },
  },
  examples: ['veil uninstall', 'veil uninstall --cluster demo', 'veil uninstall --kubernetes --context kind-kind'],
  async run({ values }) {
    if (values.kubernetes) {
      const [{ loadKubeConfig }, { kubernetesUninstall }] = await Promise.all([import('../control/kubernetes/kube-connection.js'), import('../agent/kubernetes-installer.js')]);
      const kc = loadKubeConfig({ kubeconfig: values.kubeconfig, context: values.context });
      const ns = values.namespace ?? DEFAULT_NAMESPACE;
      console.log(`${ui.info} Uninstalling veil from Kubernetes cluster "${kc.getCurrentCluster()?.name}" (namespace ${ns})`);
      await kubernetesUninstall(kc, { ...defaultSettings(), 'encryption.ipsec.secretNamespace': ns === DEFAULT_NAMESPACE ? '' : ns }, (line) => console.log(line));
      console.log(`${ui.ok} veil was uninstalled; traffic between nodes is no longer encrypted.`);
      return 0;
    }
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
