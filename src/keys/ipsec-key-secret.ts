// The IPsec key secret (data key `keys`) as `veil encryption create-key / rotate-key / key-status`
// change and read it, with cilium-cli's messages (spec ipsec.md §12.2). The key lines themselves
// come from ipsec-cli-keys.ts; this file is the registry half.
import type { Registry, RegistryObject } from '../control/registry.js';
import { VeilError } from '../util/errors.js';
import { createKeyLine, rotateKeyLine, type KeyAlgorithmChoice, type RandomBytes, type RotatedKey } from './ipsec-cli-keys.js';
import { checkKeyFileUpdate } from './ipsec-key-loader.js';

export const IPSEC_SECRET_DATA_KEY = 'keys';
export const DEFAULT_IPSEC_SECRET = 'ipsec-keys';

const encode = (line: string): string => Buffer.from(line, 'utf8').toString('base64');

function missing(name: string): VeilError {
  return new VeilError('NO_SECRET', `IPsec secret "${name}" not found`, 'create it with `veil encryption create-key`');
}

const decode = (raw: string | undefined): string | undefined => (raw === undefined ? undefined : Buffer.from(raw, 'base64').toString('utf8'));

/**
 * Refuses a write of the IPsec key secret `name` (from `before`, undefined when it is created, to
 * `after`) that agents would refuse: a missing or empty `keys`, a line they cannot parse, a rotation
 * against their rules (same id with a new key, a KeyLen change, a skipped id). Written anyway, the
 * running agents keep the old key, but an agent that restarts later cannot start, or starts with a
 * key its peers do not have. The message is the agents' own.
 */
export function checkIpsecSecretWrite(name: string, before: RegistryObject | undefined, after: RegistryObject): void {
  const next = decode(after.data?.[IPSEC_SECRET_DATA_KEY]);
  const hint = `e.g. veil secret patch ${name} -p '{"stringData":{"${IPSEC_SECRET_DATA_KEY}":"3+ rfc4106(gcm(aes)) '$(openssl rand -hex 20)' 128"}}', or veil encryption rotate-key`;
  if (next === undefined) {
    throw new VeilError('NO_IPSEC_KEYS', `refused: the IPsec key secret "${name}" would have no data key "${IPSEC_SECRET_DATA_KEY}"; every agent would fail with: open secret:${name}/${IPSEC_SECRET_DATA_KEY}: no such file or directory`, hint);
  }
  if (next.trim() === '') throw emptyKeys(name);
  const r = checkKeyFileUpdate(decode(before?.data?.[IPSEC_SECRET_DATA_KEY]), next);
  if (!r.ok) throw new VeilError(r.error.code, `refused: every agent would refuse this IPsec key file: ${r.error.message}`, r.error.hint);
}

/** The secret holds `keys` with nothing in it. */
export function emptyKeys(name: string): VeilError {
  return new VeilError('BAD_SECRET', `the IPsec key secret "${name}" has an empty "${IPSEC_SECRET_DATA_KEY}" value: it holds no key`,
    `put a key in it: veil secret patch ${name} -p '{"stringData":{"${IPSEC_SECRET_DATA_KEY}":"3+ rfc4106(gcm(aes)) '$(openssl rand -hex 20)' 128"}}'`);
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
    const next = { ...cur, data: { ...cur.data, [IPSEC_SECRET_DATA_KEY]: encode(r.value.line) } };
    try {
      checkIpsecSecretWrite(name, cur, next);
    } catch (e) {
      failure = e as VeilError;
      return undefined;
    }
    rotated = r.value;
    return next;
  });
  if (failure) throw failure;
  return rotated!;
}
