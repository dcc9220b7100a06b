// The IPsec key secret (data key `keys`) as `veil encryption create-key / rotate-key / key-status`
// change and read it, with cilium-cli's messages (spec ipsec.md §12.2). The key lines themselves
// come from ipsec-cli-keys.ts; this file is the registry half.
import type { Registry } from '../control/registry.js';
import { VeilError } from '../util/errors.js';
import { createKeyLine, rotateKeyLine, type KeyAlgorithmChoice, type RandomBytes, type RotatedKey } from './ipsec-cli-keys.js';

export const IPSEC_SECRET_DATA_KEY = 'keys';
export const DEFAULT_IPSEC_SECRET = 'ipsec-keys';

const encode = (line: string): string => Buffer.from(line, 'utf8').toString('base64');

function missing(name: string): VeilError {
  return new VeilError('NO_SECRET', `IPsec secret "${name}" not found`, 'create it with `veil encryption create-key`');
}

/** Creates the secret with a fresh key id 1; refuses (cilium-cli's message) if the secret exists. */
export async function createIpsecKeySecret(reg: Registry, name: string, algo: KeyAlgorithmChoice, random: RandomBytes): Promise<RotatedKey> {
  const line = createKeyLine(algo, random);
  try {
    await reg.create({ kind: 'Secret', metadata: { name, creationTimestamp: new Date().toISOString() }, type: 'Opaque', data: { [IPSEC_SECRET_DATA_KEY]: encode(line) } });
  } catch (e) {
    if (e instanceof VeilError && e.code === 'ALREADY_EXISTS') {
      throw new VeilError('ALREADY_EXISTS', 'IPsec secret already exists, rotate key if needed using `veil encryption rotate-key` command');
    }
    throw e;
  }
  return { line, spi: 1 };
}

/** The raw value of the secret's `keys` (what key-status prints). */
export async function readIpsecKeySecret(reg: Registry, name: string): Promise<string> {
  const s = await reg.get('Secret', name);
  if (!s) throw missing(name);
  const raw = s.data?.[IPSEC_SECRET_DATA_KEY];
  if (raw === undefined) throw new VeilError('BAD_SECRET', `IPsec secret "${name}" has no data key "${IPSEC_SECRET_DATA_KEY}"`, 'recreate it with `veil encryption create-key`');
  return Buffer.from(raw, 'base64').toString('utf8');
}

/**
 * Replaces the secret's key with the next one (id + 1, 15 wraps to 1, fresh key material), in one
 * atomic registry update so two rotations cannot both read the same old key.
 */
export async function rotateIpsecKeySecret(reg: Registry, name: string, algo: KeyAlgorithmChoice | undefined, random: RandomBytes): Promise<RotatedKey> {
  let rotated: RotatedKey | undefined;
  let failure: VeilError | undefined;
  await reg.mutate('Secret', name, (cur) => {
    rotated = undefined; failure = undefined;
    if (!cur) { failure = missing(name); return undefined; }
    const raw = cur.data?.[IPSEC_SECRET_DATA_KEY];
    if (raw === undefined) { failure = new VeilError('BAD_SECRET', `IPsec secret "${name}" has no data key "${IPSEC_SECRET_DATA_KEY}"`); return undefined; }
    const r = rotateKeyLine(Buffer.from(raw, 'base64').toString('utf8'), random, algo);
    if (!r.ok) { failure = r.error; return undefined; }
    rotated = r.value;
    return { ...cur, data: { ...cur.data, [IPSEC_SECRET_DATA_KEY]: encode(r.value.line) } };
  });
  if (failure) throw failure;
  return rotated!;
}
