// veil install: turn on encryption on the cluster (starts an agent on every node).
import { parseArgs } from 'node:util';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { applySet, defaultSettings } from '../agent/settings.js';
import { install, waitReady } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { parseDuration } from '../agent/settings.js';
import { randomBytes } from 'node:crypto';
import { createKeyLine } from '../keys/ipsec-cli-keys.js';
import { parseKeyFile } from '../keys/ipsec-keyfile.js';
import { ui } from './ui.js';

const HELP = `Usage: veil install [--encryption wireguard|ipsec] [--set key=value]... [flags]

Starts a veil agent on every node of the cluster and waits until all are ready.

Flags:
  --encryption MODE    wireguard or ipsec (same as --set encryption.enabled=true --set encryption.type=MODE)
  --set key=value      a setting (repeatable); see 'veil config keys'
  --generate-key       IPsec: create the key secret if it does not exist
  --wait-timeout DUR   how long to wait for the agents (default 2m)
  --cluster NAME       the cluster (default: the current one)

Examples:
  veil secret create ipsec-keys --from-literal=keys="3+ rfc4106(gcm(aes)) $PSK 128"
  veil install --encryption ipsec
  veil install --set encryption.enabled=true --set encryption.type=wireguard --set encryption.nodeEncryption=true`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, allowPositionals: false,
    options: {
      encryption: { type: 'string' }, set: { type: 'string', multiple: true }, 'generate-key': { type: 'boolean' },
      'wait-timeout': { type: 'string', default: '2m' }, cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(HELP); return 0; }
  const settings = defaultSettings();
  if (values.encryption !== undefined) {
    applySet(settings, 'encryption.enabled=true');
    applySet(settings, `encryption.type=${values.encryption}`);
  }
  for (const s of values.set ?? []) applySet(settings, s);
  if (!settings['encryption.enabled']) {
    throw new VeilError('NO_ENCRYPTION', 'nothing to install: encryption is not enabled', 'pass --encryption wireguard|ipsec or --set encryption.enabled=true');
  }
  const timeout = parseDuration(values['wait-timeout']!);
  const cluster = currentCluster(values.cluster);
  const reg = openRegistry(cluster);
  try {
    const type = settings['encryption.type'];
    console.log(`${ui.info} Installing veil on cluster "${cluster}" with ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption`);
    if (type === 'ipsec') {
      const name = settings['encryption.ipsec.secretName'];
      const secret = await reg.get('Secret', name);
      if (secret) {
        const raw = secret.data?.['keys'];
        if (!raw) throw new VeilError('BAD_SECRET', `secret ${name} has no data key "keys"`, `recreate it: veil secret create ${name} --from-literal=keys="3+ rfc4106(gcm(aes)) <40 hex> 128"`);
        const parsed = parseKeyFile(Buffer.from(raw, 'base64').toString('utf8'));
        if (!parsed.ok) throw parsed.error;
        console.log(`${ui.key} Found existing encryption secret ${name}`);
      } else if (values['generate-key']) {
        const line = createKeyLine('rfc4106-gcm-aes', randomBytes);
        await reg.create({ kind: 'Secret', metadata: { name, creationTimestamp: new Date().toISOString() }, data: { keys: Buffer.from(line).toString('base64') } });
        console.log(`${ui.key} Generated encryption secret ${name} (key id 1)`);
      } else {
        throw new VeilError('NO_SECRET', `IPsec needs the key secret "${name}", which does not exist`,
          `create it (veil encryption create-key, or veil secret create ${name} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128") or pass --generate-key`);
      }
    } else {
      console.log(`${ui.key} WireGuard: every node generates its own key pair and publishes its public key`);
    }
    const nodes = await install(cluster, reg, settings);
    console.log(`${ui.run} Starting agents on ${nodes.length} nodes: ${nodes.map((n) => n.metadata.name).join(', ')}`);
    await waitReady(reg, timeout, (ready, total) => console.log(`${ui.wait} Waiting for agents: ${ready}/${total} ready`), cluster);
    console.log(`${ui.ok} veil was successfully installed! ${type === 'wireguard' ? 'WireGuard' : 'IPsec'} encryption is on for all ${nodes.length} nodes.`);
    return 0;
  } finally {
    reg.close();
  }
}
