// veil install: turn on encryption on the cluster (starts an agent on every node).
import { randomBytes } from 'node:crypto';
import { currentCluster, isLabCluster, openRegistry } from '../control/cluster.js';
import { applySet, defaultSettings, parseDuration } from '../agent/settings.js';
import { labInstall } from '../lab/agents.js';
import { API_TOKEN_SECRET, ensureApiToken } from '../agent/api-token.js';
import { hostInstall } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { createIpsecKeySecret, readIpsecKeySecret } from '../keys/ipsec-key-secret.js';
import { parseKeyFile } from '../keys/ipsec-keyfile.js';
import { command, flagValue } from './flags.js';
import { ui } from './ui.js';

export const { run } = command({
  name: 'veil install',
  usage: ['veil install [--encryption wireguard|ipsec] [--set key=value]... [flags]'],
  about: `Stores the encryption settings in the cluster's registry; on a lab, starts a veil agent on every
node; on hosts (agents under systemd), waits for the registered nodes' agents. Waits until all are ready.`,
  flags: {
    encryption: { type: 'string', value: 'MODE', choices: ['wireguard', 'ipsec'], help: 'wireguard or ipsec (same as --set encryption.enabled=true --set encryption.type=MODE)' },
    set: { type: 'string', multiple: true, value: 'key=value', help: "a setting (repeatable); see 'veil config keys'" },
    'generate-key': { type: 'boolean', help: 'IPsec: create the key secret if it does not exist' },
    'wait-timeout': { type: 'string', value: 'DUR', default: '2m', help: 'how long to wait for the agents (default 2m)' },
  },
  examples: [
    'veil secret create ipsec-keys --from-literal=keys="3+ rfc4106(gcm(aes)) $PSK 128"',
    'veil install --encryption ipsec',
    'veil install --set encryption.enabled=true --set encryption.type=wireguard --set encryption.nodeEncryption=true',
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
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    try {
      const type = settings['encryption.type'];
      console.log(`${ui.info} Installing veil on cluster "${cluster}" with ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption`);
      if (type === 'ipsec') {
        const name = settings['encryption.ipsec.secretName'];
        if (await reg.get('Secret', name)) {
          const parsed = parseKeyFile(await readIpsecKeySecret(reg, name));
          if (!parsed.ok) throw parsed.error;
          console.log(`${ui.key} Found existing encryption secret ${name}`);
        } else if (values['generate-key']) {
          await createIpsecKeySecret(reg, name, 'rfc4106-gcm-aes', randomBytes);
          console.log(`${ui.key} Generated encryption secret ${name} (key id 1)`);
        } else {
          throw new VeilError('NO_SECRET', `IPsec needs the key secret "${name}", which does not exist`,
            `create it (veil encryption create-key, or veil secret create ${name} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128") or pass --generate-key`);
        }
      } else {
        console.log(`${ui.key} WireGuard: every node generates its own key pair and publishes its public key`);
      }
      if (await ensureApiToken(reg)) console.log(`${ui.key} Generated the agent API token (secret ${API_TOKEN_SECRET}): the CLI reads agents over the network with it`);
      const progress = (ready: number, total: number) => console.log(`${ui.wait} Waiting for agents: ${ready}/${total} ready`);
      if (!isLabCluster(cluster)) {
        // real hosts: their agents run under systemd and read the settings from the registry
        const nodes = await hostInstall(reg, settings, timeout, progress);
        console.log(nodes.length
          ? `${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes.length} registered nodes.`
          : `${ui.ok} settings stored: every host's agent ('veil agent run', deploy/systemd/veil-agent.service) uses them when it starts`);
        return 0;
      }
      const nodes = await labInstall(cluster, reg, settings, timeout, progress,
        (started) => console.log(`${ui.run} Starting agents on ${started.length} nodes: ${started.map((n) => n.metadata.name).join(', ')}`));
      console.log(`${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes.length} nodes.`);
      return 0;
    } finally {
      reg.close();
    }
  },
});
