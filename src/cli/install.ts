// veil install: turn on encryption on the cluster (starts an agent on every node).
import { randomBytes } from 'node:crypto';
import { currentCluster, isLabCluster, openRegistry } from '../control/cluster.js';
import { applySet, defaultSettings, parseDuration, type Settings } from '../agent/settings.js';
import { stringify as toYaml } from 'yaml';
import { DEFAULT_IMAGE, renderManifests } from '../agent/kubernetes-manifests.js';
import { labInstallAtomic } from '../lab/agents.js';
import { API_TOKEN_SECRET, ensureApiToken } from '../agent/api-token.js';
import { hostInstallAtomic } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { createIpsecKeySecret, emptyKeys, readIpsecKeySecret } from '../keys/ipsec-key-secret.js';
import { parseKeyFile } from '../keys/ipsec-keyfile.js';
import { command, flagValue, UsageError } from './flags.js';
import { ui } from './ui.js';

interface KubeFlags { kubeconfig?: string; context?: string; image?: string; 'dry-run'?: boolean; output?: string }

async function installOnKubernetes(settings: Settings, f: KubeFlags, timeoutMs: number): Promise<number> {
  if (f['dry-run']) {
    const docs = renderManifests({ settings, image: f.image });
    process.stdout.write(f.output === 'json' ? `${JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }, null, 2)}\n` : docs.map((d) => toYaml(d)).join('---\n'));
    return 0;
  }
  if (f.output) throw new UsageError('-o goes only with --dry-run', 'add --dry-run to print the objects');
  const [{ loadKubeConfig }, { kubernetesInstall }] = await Promise.all([import('../control/kubernetes/kube-connection.js'), import('../agent/kubernetes-installer.js')]);
  const kc = loadKubeConfig({ kubeconfig: f.kubeconfig, context: f.context });
  const type = settings['encryption.type'];
  console.log(`${ui.info} Installing veil on Kubernetes cluster "${kc.getCurrentCluster()?.name}" (context ${kc.getCurrentContext()}) with ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption`);
  const { nodes } = await kubernetesInstall(kc, { settings, image: f.image, timeoutMs, progress: (line) => console.log(line) });
  console.log(`${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes} nodes.`);
  return 0;
}

export const { run } = command({
  name: 'veil install',
  usage: ['veil install [--encryption wireguard|ipsec] [--set key=value]... [flags]',
    'veil install --kubernetes [--kubeconfig FILE] [--context NAME] [--image IMAGE] [--dry-run -o yaml] [--encryption ...] [--set ...]'],
  about: `Stores the encryption settings in the cluster's registry; on a lab, starts a veil agent on every
node; on hosts (agents under systemd), waits for the registered nodes' agents. Waits until all are ready.

With --kubernetes: renders veil's objects (Namespace, ServiceAccount, ClusterRole/Binding, Role/Binding,
ConfigMaps, DaemonSet) and server-side applies them with your kubeconfig and context, like kubectl;
then waits for the DaemonSet's rollout and every node's agent. --dry-run -o yaml prints them instead.`,
  flags: {
    encryption: { type: 'string', value: 'MODE', choices: ['wireguard', 'ipsec'], help: 'wireguard or ipsec (same as --set encryption.enabled=true --set encryption.type=MODE)' },
    set: { type: 'string', multiple: true, value: 'key=value', help: "a setting (repeatable); see 'veil config keys'" },
    'generate-key': { type: 'boolean', help: 'IPsec: create the key secret if it does not exist' },
    'wait-timeout': { type: 'string', value: 'DUR', default: '2m', help: 'how long to wait for the agents (default 2m)' },
    kubernetes: { type: 'boolean', help: 'install into a Kubernetes cluster as a DaemonSet' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'with --kubernetes: the kubeconfig (default $KUBECONFIG, else ~/.kube/config)' },
    context: { type: 'string', value: 'NAME', help: 'with --kubernetes: the kubeconfig context (default its current one)' },
    image: { type: 'string', value: 'IMAGE', help: `with --kubernetes: the agent image (default ${DEFAULT_IMAGE}, built from the Dockerfile)` },
    'dry-run': { type: 'boolean', help: 'with --kubernetes: print the objects (-o yaml or json), apply nothing' },
  },
  output: { choices: ['yaml', 'json'], help: 'with --dry-run: the format of the objects' },
  examples: [
    'veil secret create ipsec-keys --from-literal=keys="3+ rfc4106(gcm(aes)) $PSK 128"',
    'veil install --encryption ipsec',
    'veil install --set encryption.enabled=true --set encryption.type=wireguard --set encryption.nodeEncryption=true',
    'veil install --kubernetes --encryption wireguard --dry-run -o yaml',
    'veil install --kubernetes --encryption ipsec --set encryption.ipsec.secretName=cilium-ipsec-keys --set encryption.ipsec.secretNamespace=kube-system',
  ],
  async run({ values }) {
    const settings = defaultSettings();
    if (values.encryption !== undefined) {
      applySet(settings, 'encryption.enabled=true');
      applySet(settings, `encryption.type=${values.encryption}`);
    }
    for (const s of values.set ?? []) flagValue(() => applySet(settings, s));
    if (!settings['encryption.enabled']) {
      throw new VeilError('NO_ENCRYPTION', 'nothing to install: encryption is not enabled', 'pass --encryption wireguard|ipsec or --set encryption.enabled=true');
    }
    const timeout = flagValue(() => parseDuration(values['wait-timeout']!));
    if (values.kubernetes) return installOnKubernetes(settings, values, timeout);
    for (const k of ['kubeconfig', 'context', 'image', 'dry-run'] as const) {
      if (values[k] !== undefined) throw new UsageError(`--${k} goes only with --kubernetes`, 'add --kubernetes, or leave it out');
    }
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    const createdSecrets: string[] = []; // an install that fails removes what it created
    try {
      const type = settings['encryption.type'];
      console.log(`${ui.info} Installing veil on cluster "${cluster}" with ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption`);
      if (type === 'ipsec') {
        const name = settings['encryption.ipsec.secretName'];
        if (await reg.get('Secret', name)) {
          const text = await readIpsecKeySecret(reg, name);
          if (text.trim() === '') throw emptyKeys(name);
          const parsed = parseKeyFile(text);
          if (!parsed.ok) throw new VeilError(parsed.error.code, `the IPsec key secret "${name}" holds a key file agents refuse: ${parsed.error.message}`, parsed.error.hint);
          console.log(`${ui.key} Found existing encryption secret ${name}`);
        } else if (values['generate-key']) {
          await createIpsecKeySecret(reg, name, 'rfc4106-gcm-aes', randomBytes);
          createdSecrets.push(name);
          console.log(`${ui.key} Generated encryption secret ${name} (key id 1)`);
        } else {
          throw new VeilError('NO_SECRET', `IPsec needs the key secret "${name}", which does not exist`,
            `create it (veil encryption create-key, or veil secret create ${name} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128") or pass --generate-key`);
        }
      } else {
        console.log(`${ui.key} WireGuard: every node generates its own key pair and publishes its public key`);
      }
      if (await ensureApiToken(reg)) createdSecrets.push(API_TOKEN_SECRET);
      if (createdSecrets.includes(API_TOKEN_SECRET)) console.log(`${ui.key} Generated the agent API token (secret ${API_TOKEN_SECRET}): the CLI reads agents over the network with it`);
      const progress = (ready: number, total: number) => console.log(`${ui.wait} Waiting for agents: ${ready}/${total} ready`);
      if (!isLabCluster(cluster)) {
        // real hosts: their agents run under systemd and read the settings from the registry
        let nodes;
        try {
          nodes = await hostInstallAtomic(reg, settings, timeout, progress);
        } catch (e) {
          for (const s of createdSecrets) await reg.delete('Secret', s).catch(() => undefined);
          throw e;
        }
        console.log(nodes.length
          ? `${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes.length} registered nodes.`
          : `${ui.ok} settings stored: every host's agent ('veil agent run', deploy/systemd/veil-agent.service) uses them when it starts`);
        return 0;
      }
      let nodes;
      try {
        nodes = await labInstallAtomic(cluster, reg, settings, timeout, progress,
          (started) => console.log(`${ui.run} Starting agents on ${started.length} nodes: ${started.map((n) => n.metadata.name).join(', ')}`));
      } catch (e) {
        for (const s of createdSecrets) await reg.delete('Secret', s).catch(() => undefined);
        throw e;
      }
      console.log(`${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes.length} nodes.`);
      return 0;
    } finally {
      reg.close();
    }
  },
});
