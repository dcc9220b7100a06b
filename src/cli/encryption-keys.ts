// veil encryption create-key / rotate-key / key-status: the IPsec key secret, as cilium-cli's
// `cilium encryption` does it (spec ipsec.md §12.2). Flags and printing only; the work is in
// src/keys/ipsec-key-secret.ts (registry) and src/keys/ipsec-cli-keys.ts (key lines).
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import { KEY_ALGORITHM_CHOICES, type KeyAlgorithmChoice } from '../keys/ipsec-cli-keys.js';
import { createIpsecKeySecret, DEFAULT_IPSEC_SECRET, readIpsecKeySecret, rotateIpsecKeySecret } from '../keys/ipsec-key-secret.js';
import { readSettings } from '../agent/install-state.js';
import { VeilError } from '../util/errors.js';
import { checkOutputFormat } from './read-flags.js';

const COMMON_HELP = `  --secret NAME           the key secret (default: the installed encryption.ipsec.secretName, else ${DEFAULT_IPSEC_SECRET})
  --wait-duration DUR     accepted for cilium-cli compatibility (the lab registry answers at once)
  -n, --namespace NS      accepted for cilium-cli compatibility (the lab has one namespace)
  --cluster NAME          the cluster (default: the current one)`;

const HELP = {
  'create-key': `Usage: veil encryption create-key [--auth-algo rfc4106-gcm-aes|cbc-aes-sha256|cbc-aes-sha512] [flags]

Creates the IPsec key secret with a fresh random key, key id (SPI) 1, as cilium-cli does:
  rfc4106-gcm-aes (default)  1+ rfc4106(gcm(aes)) <40 hex> 128
  cbc-aes-sha256             1+ hmac(sha256) <32 hex> cbc(aes) <32 hex>
  cbc-aes-sha512             1+ hmac(sha512) <64 hex> cbc(aes) <32 hex>
Fails if the secret exists (rotate instead).

Flags:
  --auth-algo ALGO        the algorithm (default rfc4106-gcm-aes)
${COMMON_HELP}

Examples:
  veil encryption create-key
  veil encryption create-key --auth-algo cbc-aes-sha256`,
  'rotate-key': `Usage: veil encryption rotate-key [--auth-algo ALGO] [flags]

Replaces the key in the IPsec secret with the next one: key id + 1 (15 wraps to 1), always "+",
fresh random key of the same length and algorithm. The agents install the new key's inbound SAs,
publish it, move their senders, and drop the old SAs after encryption.ipsec.keyRotationDuration.
--auth-algo switches algorithm only where the key length stays (agents refuse a length change).

Flags:
  --auth-algo ALGO        rfc4106-gcm-aes, cbc-aes-sha256 or cbc-aes-sha512 (default: keep)
${COMMON_HELP}

Examples:
  veil encryption rotate-key
  veil encryption rotate-key && veil encryption status`,
  'key-status': `Usage: veil encryption key-status [-o json] [flags]

Prints the raw value of the IPsec key secret: "IPsec key: <value>" or {"ipsec-key": "<value>"}.
It shows key material: the terminal and its scrollback hold the key afterwards.

Flags:
  -o, --output json       JSON instead of text
${COMMON_HELP}

Examples:
  veil encryption key-status
  veil encryption key-status -o json`,
} as const;

type KeyCommand = keyof typeof HELP;

const OPTIONS = {
  'auth-algo': { type: 'string' }, secret: { type: 'string' }, 'wait-duration': { type: 'string' }, namespace: { type: 'string', short: 'n' },
  output: { type: 'string', short: 'o' }, cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

function algorithm(value: string | undefined): KeyAlgorithmChoice | undefined {
  if (value === undefined || value === '') return undefined;
  if (!(KEY_ALGORITHM_CHOICES as readonly string[]).includes(value)) {
    throw new VeilError('BAD_ARGS', `unsupported --auth-algo "${value}"`, `use one of: ${KEY_ALGORITHM_CHOICES.join(', ')}`);
  }
  return value as KeyAlgorithmChoice;
}

/** --secret, else the installed secret name, else the default. */
async function secretName(reg: Registry, flag: string | undefined): Promise<string> {
  if (flag) return flag;
  const settings = await readSettings(reg).catch(() => undefined);
  return settings?.['encryption.ipsec.secretName'] ?? DEFAULT_IPSEC_SECRET;
}

async function keyCommand(cmd: KeyCommand, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, allowPositionals: false, options: OPTIONS });
  if (values.help) { console.log(HELP[cmd]); return 0; }
  if (cmd === 'key-status') checkOutputFormat(values.output, ['json']);
  else if (values.output !== undefined) throw new VeilError('BAD_ARGS', `${cmd} has no -o flag`, `run 'veil encryption ${cmd} -h'`);
  if (cmd !== 'rotate-key' || values['auth-algo'] !== undefined) algorithm(values['auth-algo']);
  const reg = openRegistry(currentCluster(values.cluster));
  try {
    const name = await secretName(reg, values.secret);
    if (cmd === 'create-key') {
      const k = await createIpsecKeySecret(reg, name, algorithm(values['auth-algo']) ?? 'rfc4106-gcm-aes', randomBytes);
      console.log(`IPsec key successfully created, new key SPI: ${k.spi}`);
    } else if (cmd === 'rotate-key') {
      const k = await rotateIpsecKeySecret(reg, name, algorithm(values['auth-algo']), randomBytes);
      console.log(`IPsec key successfully rotated, new key SPI: ${k.spi}`);
    } else {
      const raw = await readIpsecKeySecret(reg, name);
      if (values.output === 'json') process.stdout.write(JSON.stringify({ 'ipsec-key': raw }, null, 1) + '\n');
      else console.log(`IPsec key: ${raw}`);
    }
    return 0;
  } finally {
    reg.close();
  }
}

/** Entries for the `veil encryption` subcommand table. */
export const KEY_SUBCOMMANDS: Record<string, { summary: string; run(args: string[]): Promise<number> }> = {
  'create-key': { summary: 'create the IPsec key secret with a fresh key (SPI 1)', run: (a) => keyCommand('create-key', a) },
  'rotate-key': { summary: 'replace the IPsec key with the next one (SPI + 1)', run: (a) => keyCommand('rotate-key', a) },
  'key-status': { summary: 'print the IPsec key secret (exposes key material)', run: (a) => keyCommand('key-status', a) },
  ks: { summary: 'alias of key-status', run: (a) => keyCommand('key-status', a) },
};
