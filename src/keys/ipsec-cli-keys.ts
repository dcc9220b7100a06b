// The pure halves of `veil encryption create-key` / `rotate-key`, as cilium-cli does them (spec
// ipsec.md §12.2): generate a key line, or parse the current one with cilium-cli's anchored patterns
// and produce the next. Randomness is passed in; no I/O here.
import { VeilError } from '../util/errors.js';
import { AEAD_GCM, AUTH_SHA256, AUTH_SHA512, ENC_CBC_AES } from '../esp/esp-transform.js';
import { IPSEC_MAX_KEY_ID, type Result } from './ipsec-keyfile.js';

export type KeyAlgorithmChoice = 'rfc4106-gcm-aes' | 'cbc-aes-sha256' | 'cbc-aes-sha512';
export const KEY_ALGORITHM_CHOICES: readonly KeyAlgorithmChoice[] = ['rfc4106-gcm-aes', 'cbc-aes-sha256', 'cbc-aes-sha512'];

export type RandomBytes = (n: number) => Uint8Array;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The fields after the id for a fresh key of `algo`: what cilium-cli generates. */
function freshFields(algo: KeyAlgorithmChoice, random: RandomBytes): string {
  switch (algo) {
    case 'rfc4106-gcm-aes': return `${AEAD_GCM} ${hex(random(20))} 128`;
    case 'cbc-aes-sha256': return `${AUTH_SHA256} ${hex(random(16))} ${ENC_CBC_AES} ${hex(random(16))}`;
    case 'cbc-aes-sha512': return `${AUTH_SHA512} ${hex(random(32))} ${ENC_CBC_AES} ${hex(random(16))}`;
  }
}

/** `1+ rfc4106(gcm(aes)) <40 hex> 128`, `1+ hmac(sha256) <32 hex> cbc(aes) <32 hex>` or `1+ hmac(sha512) <64 hex> cbc(aes) <32 hex>`. */
export function createKeyLine(algo: KeyAlgorithmChoice, random: RandomBytes): string {
  return `1+ ${freshFields(algo, random)}`;
}

// cilium-cli's patterns: id with an optional "+", single whitespace characters between fields.
const AEAD_PATTERN = /^([0-9]+\+?)\s(\S+)\s([A-Za-z0-9]+)\s([0-9]+)$/;
const AUTHENC_PATTERN = /^([0-9]+\+?)\s(\S+)\s([A-Za-z0-9]+)\s(\S+)\s([A-Za-z0-9]+)$/;

export interface RotatedKey {
  line: string;
  spi: number;
}

function cliError(message: string, hint: string): Result<never> {
  return { ok: false, error: new VeilError('IPSEC_KEY_ROTATE', message, hint) };
}

function algorithmOf(m: RegExpMatchArray, aead: boolean): KeyAlgorithmChoice | undefined {
  if (aead) return m[2] === AEAD_GCM ? 'rfc4106-gcm-aes' : undefined;
  if (m[4] !== ENC_CBC_AES) return undefined;
  if (m[2] === AUTH_SHA256) return 'cbc-aes-sha256';
  if (m[2] === AUTH_SHA512) return 'cbc-aes-sha512';
  return undefined;
}

/** Hex length of a key field, without a "0x" (cilium-cli counts it and makes the new key one byte longer). */
const keyHexLength = (field: string): number => (field.startsWith('0x') ? field.length - 2 : field.length);

/**
 * The next key line: id + 1 (16 and up become 1), always `+`, a fresh key of the same hex length
 * and the same algorithm, or a fresh key of `algo` if it is given and differs. A trailing newline
 * is tolerated. Changing the algorithm is refused when it would change Cilium's KeyLen, because
 * every agent refuses such a rotation ("invalid key rotation: key length must not change").
 */
export function rotateKeyLine(oldValue: string, random: RandomBytes, algo?: KeyAlgorithmChoice): Result<RotatedKey> {
  const value = oldValue.replace(/\r?\n$/, '');
  const aead = value.match(AEAD_PATTERN);
  const m = aead ?? value.match(AUTHENC_PATTERN);
  if (!m) {
    return cliError('IPsec key has unsupported format',
      'the secret holds one line "<id>+ <algo> <hex key> <icv>" or "<id>+ <auth> <hex key> <enc> <hex key>"');
  }
  const idText = m[1]!.replace(/\+$/, '');
  const id = Number(idText);
  if (!Number.isSafeInteger(id)) return cliError(`invalid IPsec key SPI: ${idText}`, 'the key id is a number from 1 to 15');
  const spi = id + 1 > IPSEC_MAX_KEY_ID ? 1 : id + 1;
  const current = algorithmOf(m, aead !== null);
  if (algo && algo !== current) {
    const oldKeyLen = aead ? Number(m[4]) / 8 : keyHexLength(m[3]!);
    const fresh = freshFields(algo, random);
    const newKeyLen = algo === 'rfc4106-gcm-aes' ? 16 : keyHexLength(fresh.split(' ')[1]!);
    if (newKeyLen !== oldKeyLen) {
      return cliError(`changing the IPsec algorithm to ${algo} changes the key length (KeyLen ${oldKeyLen} to ${newKeyLen})`,
        'agents refuse such a rotation ("invalid key rotation: key length must not change"); keep the current algorithm');
    }
    return { ok: true, value: { line: `${spi}+ ${fresh}`, spi } };
  }
  const freshKey = (field: string): string => hex(random(Math.floor(keyHexLength(field) / 2)));
  const line = aead
    ? `${spi}+ ${m[2]} ${freshKey(m[3]!)} ${m[4]}`
    : `${spi}+ ${m[2]} ${freshKey(m[3]!)} ${m[4]} ${freshKey(m[5]!)}`;
  return { ok: true, value: { line, spi } };
}
