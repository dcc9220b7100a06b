// The IPsec key file in Cilium's grammar (spec ipsec.md §2-§5): `key-id[+] algo key icv` (AEAD) or
// `key-id[+] auth key enc key`. Cilium's checks run first, in Cilium's order, with Cilium's exact
// messages; veil's own refusals (where Cilium panics, accepts garbage, or names an algorithm veil
// does not implement) come after them. Nothing here throws on bad input: every failure is a Result.
import { VeilError } from '../util/errors.js';
import { constantTimeEqual } from '../crypto/util.js';
import {
  AEAD_GCM, AUTH_SHA256, AUTH_SHA512, ENC_CBC_AES, HMAC_KEY_MAX, HMAC_KEY_MIN, AES_KEY_LENGTHS,
  GCM_SALT_LENGTH, type AuthName,
} from '../esp/esp-transform.js';

export type Result<T> = { ok: true; value: T } | { ok: false; error: VeilError };

interface IpsecKeyCommon {
  /** The key id, 1..15; also the SPI on the wire. */
  spi: number;
  /** Whether the line had `+`. veil behaves like Cilium >= 1.17: always per-tunnel keys and ESN. */
  plus: boolean;
  /** Cilium's KeyLen (spec §6): ICV bits / 8 for AEAD, hex characters of the auth key otherwise. */
  keyLen: number;
  reqid: 1;
}

export interface AeadIpsecKey extends IpsecKeyCommon {
  kind: 'aead';
  name: typeof AEAD_GCM;
  /** AES key followed by the 4-byte salt (20, 28 or 36 bytes). */
  key: Uint8Array;
  icvBits: 96 | 128;
}

export interface AuthEncIpsecKey extends IpsecKeyCommon {
  kind: 'authenc';
  auth: AuthName;
  authKey: Uint8Array;
  enc: typeof ENC_CBC_AES;
  encKey: Uint8Array;
}

export type IpsecKey = AeadIpsecKey | AuthEncIpsecKey;

export const IPSEC_MAX_KEY_ID = 15;
/** Go's bufio.Scanner limit, which Cilium's line reader inherits. */
const MAX_LINE = 64 * 1024;

const ok = <T>(value: T): Result<T> => ({ ok: true, value });

const KEY_FORMAT_HINT =
  'a key line is "<id>+ rfc4106(gcm(aes)) <40 hex chars> 128" or "<id>+ hmac(sha256) <hex> cbc(aes) <hex>" ' +
  '(create one with `veil encryption create-key`)';

function formatError(message: string, lineNo: number, hint = KEY_FORMAT_HINT): Result<never> {
  return { ok: false, error: new VeilError('IPSEC_KEY_FORMAT', message, `line ${lineNo} of the IPsec key file; ${hint}`) };
}

function unsupported(message: string, lineNo: number, hint: string): Result<never> {
  return { ok: false, error: new VeilError('IPSEC_KEY_UNSUPPORTED', message, `line ${lineNo} of the IPsec key file; ${hint}`) };
}

/** Lines as Cilium's scanner yields them: split on LF, one trailing CR dropped, no line after a final LF. */
export function keyFileLines(text: string): Result<string[]> {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length >= MAX_LINE) {
      return formatError('error scanning IPsec keys: bufio.Scanner: token too long', i + 1, 'a key line is at most 64 KiB');
    }
    if (line.endsWith('\r')) lines[i] = line.slice(0, -1);
  }
  return ok(lines);
}

/** Cilium's decodeKey: `""` is the empty key, one lower-case "0x" is stripped, then hex of either case. */
export function decodeKeyField(raw: string): Uint8Array | undefined {
  if (raw === '""') return new Uint8Array(0);
  const hex = raw.startsWith('0x') ? raw.slice(2) : raw;
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** Hex characters of a key field without "0x" (Cilium's KeyLen for auth+enc lines; `""` counts 0). */
function hexLength(raw: string): number {
  if (raw === '""') return 0;
  return raw.startsWith('0x') ? raw.length - 2 : raw.length;
}

/** Go's strconv.Atoi: optional sign, decimal digits, int64 range. */
function atoi(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > 9223372036854775807n || n < -9223372036854775808n) return undefined;
  return Number(n);
}

type SpiResult = { ok: true; spi: number; plus: boolean } | { ok: false; message: string };

/** Cilium's parseSpi; its errors get the "failed to parse SPI: " prefix from the caller. */
export function parseSpiField(field: string): SpiResult {
  const plus = field.endsWith('+');
  const s = plus ? field.slice(0, -1) : field;
  const n = atoi(s);
  if (n === undefined) return { ok: false, message: `the first argument of the IPsec secret is not a number. Attempted "${s}"` };
  if (n > IPSEC_MAX_KEY_ID) {
    return { ok: false, message: `encryption key space exhausted. ID must be nonzero and less than 16. Attempted "${s}"` };
  }
  if (n === 0) return { ok: false, message: `zero is not a valid key ID. ID must be nonzero and less than 16. Attempted "${s}"` };
  // Cilium lets a negative id through (it wraps to 255 in a uint8); we refuse it.
  if (n < 0) return { ok: false, message: `negative key ID. ID must be nonzero and less than 16. Attempted "${s}"` };
  return { ok: true, spi: n, plus };
}

/**
 * One key line after Cilium's own checks: what the rotation rules need (id, KeyLen), and key() for
 * veil's own checks (algorithms it implements, key sizes), which come after the rotation rules, as
 * the kernel's checks come after Cilium's.
 */
export interface KeyLine {
  spi: number;
  keyLen: number;
  lineNo: number;
  key(): Result<IpsecKey>;
}

/** Parses one key line (already split off and CR-stripped). lineNo only feeds the hint. */
export function parseKeyLine(line: string, lineNo = 1): Result<IpsecKey> {
  const l = readKeyLine(line, lineNo);
  return l.ok ? l.value.key() : l;
}

/** Cilium's checks of one key line, in Cilium's order; veil's own follow in key(). */
export function readKeyLine(line: string, lineNo = 1): Result<KeyLine> {
  const f = line.trim().split(/\s+/);
  if (f.length < 3) return formatError('missing IPSec key or invalid format', lineNo);
  // Cilium <= 1.19 panics on a leading space and 1.20 reads an empty id: refuse with 1.20's words.
  if (/^\s/.test(line)) {
    return formatError('failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted ""', lineNo,
      'remove the whitespace before the key id');
  }
  // Cilium <= 1.19 reads two separators in a row as an empty key, which the kernel refuses later.
  if (/\s\s/.test(line.trim())) {
    return formatError('invalid format: empty field in the IPsec secret (two separators in a row)', lineNo,
      'separate the fields by a single space');
  }
  const spiResult = parseSpiField(f[0]!);
  if (!spiResult.ok) {
    return formatError(`failed to parse SPI: ${spiResult.message}`, lineNo, 'the key id is a number from 1 to 15, usually followed by "+"');
  }
  if (f.length > 5) return formatError('invalid format: too many fields in the IPsec secret', lineNo);
  const { spi, plus } = spiResult;
  if (f.length === 4) return readAeadFields(f as [string, string, string, string], spi, plus, lineNo);
  if (f.length === 3) {
    // Cilium indexes a fifth field here and panics.
    return formatError(`invalid format: ${f.length} fields in the IPsec secret; an AEAD key has 4 and an authentication + encryption key has 5`, lineNo);
  }
  return readAuthEncFields(f as [string, string, string, string, string], spi, plus, lineNo);
}

function readAeadFields(f: [string, string, string, string], spi: number, plus: boolean, lineNo: number): Result<KeyLine> {
  const [, name, keyField, icvField] = f;
  if (!name.startsWith('rfc')) return formatError(`invalid AEAD algorithm "${name}"`, lineNo);
  const key = decodeKeyField(keyField);
  if (!key) return formatError(`unable to decode AEAD key string "${keyField}"`, lineNo, 'the key is an even number of hex digits');
  const icv = atoi(icvField);
  if (icv === undefined) return formatError('ICV length is invalid or missing', lineNo);
  if (icv !== 96 && icv !== 128 && icv !== 256) return formatError('only ICV lengths 96, 128, and 256 are accepted', lineNo);
  return ok({ spi, keyLen: icv / 8, lineNo, key: () => aeadKey(name, key, icv, spi, plus, lineNo) });
}

/** veil's own checks of an AEAD line: Cilium hands these to the kernel. */
function aeadKey(name: string, key: Uint8Array, icv: 96 | 128 | 256, spi: number, plus: boolean, lineNo: number): Result<IpsecKey> {
  if (name !== AEAD_GCM) {
    return unsupported(`unsupported AEAD algorithm "${name}": veil implements ${AEAD_GCM}`, lineNo, `use ${AEAD_GCM}`);
  }
  if (icv === 256) {
    return unsupported(`ICV length 256 is not valid for ${AEAD_GCM}: RFC 4106 allows 96 or 128 bits`, lineNo, 'use 128 (or 96)');
  }
  const aesLength = key.length - GCM_SALT_LENGTH;
  if (!AES_KEY_LENGTHS.includes(aesLength)) {
    return formatError(
      `invalid ${AEAD_GCM} key length: ${key.length} bytes; it must be 20, 28 or 36 bytes (a 16, 24 or 32-byte AES key and a 4-byte salt)`,
      lineNo, 'generate 20 random bytes as 40 hex characters (`veil encryption create-key`)');
  }
  return ok({ kind: 'aead', spi, plus, keyLen: icv / 8, reqid: 1, name: AEAD_GCM, key, icvBits: icv });
}

function readAuthEncFields(
  f: [string, string, string, string, string], spi: number, plus: boolean, lineNo: number,
): Result<KeyLine> {
  const [, auth, authField, enc, encField] = f;
  const authKey = decodeKeyField(authField);
  if (!authKey) return formatError(`unable to decode authentication key string "${authField}"`, lineNo, 'the key is an even number of hex digits');
  const encKey = decodeKeyField(encField);
  if (!encKey) return formatError(`unable to decode encryption key string "${encField}"`, lineNo, 'the key is an even number of hex digits');
  const keyLen = hexLength(authField);
  return ok({ spi, keyLen, lineNo, key: () => authEncKey(auth, authKey, enc, encKey, keyLen, spi, plus, lineNo) });
}

/** veil's own checks of an authentication + encryption line: Cilium hands these to the kernel. */
function authEncKey(
  auth: string, authKey: Uint8Array, enc: string, encKey: Uint8Array, keyLen: number, spi: number, plus: boolean, lineNo: number,
): Result<IpsecKey> {
  const better = `use ${AUTH_SHA256} or ${AUTH_SHA512} with ${ENC_CBC_AES}, or ${AEAD_GCM}`;
  if (auth === 'digest_null') {
    return unsupported('authentication algorithm "digest_null" refused: it provides no integrity protection', lineNo, better);
  }
  if (enc === 'cipher_null') return unsupported('encryption algorithm "cipher_null" refused: it provides no encryption', lineNo, better);
  if (auth !== AUTH_SHA256 && auth !== AUTH_SHA512) {
    return unsupported(`unsupported authentication algorithm "${auth}": veil implements ${AUTH_SHA256} and ${AUTH_SHA512}`, lineNo, better);
  }
  if (enc !== ENC_CBC_AES) {
    return unsupported(`unsupported encryption algorithm "${enc}": veil implements ${ENC_CBC_AES}`, lineNo, better);
  }
  if (authKey.length < HMAC_KEY_MIN || authKey.length > HMAC_KEY_MAX) {
    return formatError(
      `invalid ${auth} key length: ${authKey.length} bytes; it must be ${HMAC_KEY_MIN} to ${HMAC_KEY_MAX} bytes`,
      lineNo, `\`veil encryption create-key\` generates ${auth === AUTH_SHA256 ? 16 : 32} bytes`);
  }
  if (!AES_KEY_LENGTHS.includes(encKey.length)) {
    return formatError(`invalid ${ENC_CBC_AES} key length: ${encKey.length} bytes; it must be 16, 24 or 32 bytes`, lineNo,
      '`veil encryption create-key` generates 16 bytes (32 hex characters)');
  }
  return ok({ kind: 'authenc', spi, plus, keyLen, reqid: 1, auth, authKey, enc: ENC_CBC_AES, encKey });
}

/** The lines of a key file, refused when there is none. */
export function keyFileNonEmptyLines(text: string): Result<string[]> {
  const lines = keyFileLines(text);
  if (!lines.ok) return lines;
  // Cilium accepts an empty file and runs with SPI 0 (PR #45641).
  if (lines.value.length === 0) return formatError('the IPsec key file is empty', 1);
  return lines;
}

/** Parses a whole key file: every line is a full key, applied in order. An empty file is refused. */
export function parseKeyFile(text: string): Result<IpsecKey[]> {
  const lines = keyFileNonEmptyLines(text);
  if (!lines.ok) return lines;
  const keys: IpsecKey[] = [];
  for (let i = 0; i < lines.value.length; i++) {
    const key = parseKeyLine(lines.value[i]!, i + 1);
    if (!key.ok) return key;
    keys.push(key.value);
  }
  return ok(keys);
}

/** Same id and the same key material and algorithms (the `+` does not matter). */
export function sameKey(a: IpsecKey, b: IpsecKey): boolean {
  if (a.spi !== b.spi) return false;
  if (a.kind === 'aead' && b.kind === 'aead') return a.icvBits === b.icvBits && constantTimeEqual(a.key, b.key);
  if (a.kind === 'authenc' && b.kind === 'authenc') {
    return a.auth === b.auth && constantTimeEqual(a.authKey, b.authKey) && constantTimeEqual(a.encKey, b.encKey);
  }
  return false;
}
