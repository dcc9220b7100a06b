// veil encryption create-key / rotate-key / key-status: the IPsec key secret, as cilium-cli's
// `cilium encryption` does it (spec ipsec.md §12.2). Flags and printing only; the work is in
// src/keys/ipsec-key-secret.ts (registry) and src/keys/ipsec-cli-keys.ts (key lines).
import { randomBytes } from 'node:crypto';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import { KEY_ALGORITHM_CHOICES, type KeyAlgorithmChoice } from '../keys/ipsec-cli-keys.js';
import { createIpsecKeySecret, DEFAULT_IPSEC_SECRET, readIpsecKeySecret, rotateIpsecKeySecret } from '../keys/ipsec-key-secret.js';
import { ipsecSecretName } from '../agent/install-state.js';
import { requestWireGuardRotation } from '../keys/wireguard-rotation-request.js';
import { command, UsageError, type Runnable } from './flags.js';

/** The flags every key command takes besides its own. */
const KEY_FLAGS = {
  secret: { type: 'string', value: 'NAME', help: `the key secret (default: the installed encryption.ipsec.secretName, else ${DEFAULT_IPSEC_SECRET})` },
  'wait-duration': { type: 'string', value: 'DUR', help: 'accepted for cilium-cli compatibility (the lab registry answers at once)' },
  namespace: { type: 'string', short: 'n', value: 'NS', help: 'accepted for cilium-cli compatibility (the lab has one namespace)' },
} as const;

function algorithm(value: string | undefined): KeyAlgorithmChoice | undefined {
  if (value === undefined || value === '') return undefined; // cilium-cli passes "" for "keep"
  if (!(KEY_ALGORITHM_CHOICES as readonly string[]).includes(value)) {
    throw new UsageError(`unsupported --auth-algo "${value}"`, `use one of: ${KEY_ALGORITHM_CHOICES.join(', ')}`);
  }
  return value as KeyAlgorithmChoice;
}

/** Opens the registry and names the secret: --secret, else the installed secret name, else the default. */
async function withSecret<T>(values: { cluster?: string; secret?: string }, fn: (reg: Registry, name: string) => Promise<T>): Promise<T> {
  const reg = openRegistry(currentCluster(values.cluster));
  try {
    return await fn(reg, values.secret || await ipsecSecretName(reg));
  } finally {
    reg.close();
  }
}

/** rotate-key --wireguard: asks the nodes' agents to rotate their static keys (they do it without loss). */
async function rotateWireGuard(values: { cluster?: string; node?: string; 'auth-algo'?: string }): Promise<number> {
  if (values['auth-algo']) throw new UsageError('--auth-algo is for IPsec keys', 'a WireGuard key is always X25519: drop --auth-algo');
  const reg = openRegistry(currentCluster(values.cluster));
  try {
    const { id, nodes } = await requestWireGuardRotation(reg, values.node ? [values.node] : undefined);
    console.log(`WireGuard key rotation requested on ${nodes.length} node${nodes.length === 1 ? '' : 's'} (${nodes.join(', ')}), request ${id}`);
    console.log("each node announces its next key, switches once its peers accept it, then retires the old one: follow it with 'veil status'");
    return 0;
  } finally {
    reg.close();
  }
}

/** create-key and rotate-key: a new key line in the secret, then cilium-cli's one-line answer. */
function keyChange(sub: 'create-key' | 'rotate-key', o: { summary: string; usage: string[]; about: string; algoHelp: string; examples: string[] }) {
  return command({
    name: `veil encryption ${sub}`, summary: o.summary, usage: o.usage, about: o.about, examples: o.examples,
    flags: {
      'auth-algo': { type: 'string', value: 'ALGO', help: o.algoHelp }, ...KEY_FLAGS,
      ...(sub === 'rotate-key' ? {
        wireguard: { type: 'boolean', help: "rotate the nodes' WireGuard static keys instead (without loss)" },
        node: { type: 'string', value: 'NODE', help: 'with --wireguard: only this node (default: every node)' },
      } as const : {}),
    },
    async run({ values }) {
      const v = values as typeof values & { wireguard?: boolean; node?: string };
      if (v.wireguard) return rotateWireGuard(v);
      if (v.node) throw new UsageError('--node goes with --wireguard', 'IPsec keys are the cluster\'s: rotate-key without --node');
      const algo = algorithm(values['auth-algo']);
      const k = await withSecret(values, (reg, name) => (sub === 'create-key'
        ? createIpsecKeySecret(reg, name, algo ?? 'rfc4106-gcm-aes', randomBytes)
        : rotateIpsecKeySecret(reg, name, algo, randomBytes)));
      console.log(`IPsec key successfully ${sub === 'create-key' ? 'created' : 'rotated'}, new key SPI: ${k.spi}`);
      return 0;
    },
  });
}

const createKey = keyChange('create-key', {
  summary: 'create the IPsec key secret with a fresh key (SPI 1)',
  usage: ['veil encryption create-key [--auth-algo rfc4106-gcm-aes|cbc-aes-sha256|cbc-aes-sha512] [flags]'],
  about: `Creates the IPsec key secret with a fresh random key, key id (SPI) 1, as cilium-cli does:
  rfc4106-gcm-aes (default)  1+ rfc4106(gcm(aes)) <40 hex> 128
  cbc-aes-sha256             1+ hmac(sha256) <32 hex> cbc(aes) <32 hex>
  cbc-aes-sha512             1+ hmac(sha512) <64 hex> cbc(aes) <32 hex>
Fails if the secret exists (rotate instead).`,
  algoHelp: 'the algorithm (default rfc4106-gcm-aes)',
  examples: ['veil encryption create-key', 'veil encryption create-key --auth-algo cbc-aes-sha256'],
});

const rotateKey = keyChange('rotate-key', {
  summary: 'replace the IPsec key with the next one (SPI + 1), or rotate WireGuard node keys',
  usage: ['veil encryption rotate-key [--auth-algo ALGO] [flags]', 'veil encryption rotate-key --wireguard [--node NODE] [flags]'],
  about: `Replaces the key in the IPsec secret with the next one: key id + 1 (15 wraps to 1), always "+",
fresh random key of the same length and algorithm. The agents install the new key's inbound SAs,
publish it, move their senders, and drop the old SAs after encryption.ipsec.keyRotationDuration.
--auth-algo switches algorithm only where the key length stays (agents refuse a length change).

With --wireguard, each node's agent (or NODE's) rotates its WireGuard static key without losing a
packet: it announces the next public key, every peer accepts handshakes from it, the node switches
(sessions go on) and retires the old key once every peer has handshaken with the new one.
encryption.wireguard.keyRotationInterval does the same on a schedule.`,
  algoHelp: 'rfc4106-gcm-aes, cbc-aes-sha256 or cbc-aes-sha512 (default: keep)',
  examples: ['veil encryption rotate-key', 'veil encryption rotate-key && veil encryption status', 'veil encryption rotate-key --wireguard',
    'veil encryption rotate-key --wireguard --node kind-worker'],
});

const keyStatus = command({
  name: 'veil encryption key-status',
  summary: 'print the IPsec key secret (exposes key material)',
  usage: ['veil encryption key-status [-o json] [flags]'],
  about: `Prints the raw value of the IPsec key secret: "IPsec key: <value>" or {"ipsec-key": "<value>"}.
It shows key material: the terminal and its scrollback hold the key afterwards.`,
  flags: KEY_FLAGS,
  output: { choices: ['json'], help: 'JSON instead of text' },
  examples: ['veil encryption key-status', 'veil encryption key-status -o json'],
  async run({ values }) {
    const raw = await withSecret(values, (reg, name) => readIpsecKeySecret(reg, name));
    if (values.output === 'json') process.stdout.write(JSON.stringify({ 'ipsec-key': raw }, null, 1) + '\n');
    else console.log(`IPsec key: ${raw}`);
    return 0;
  },
});

/** Entries for the `veil encryption` group (ks: cilium-cli's alias of key-status). */
export const KEY_COMMANDS: Record<string, Runnable> = { 'create-key': createKey, 'rotate-key': rotateKey, 'key-status': keyStatus };
export const KEY_ALIASES: Record<string, string> = { ks: 'key-status' };
