// Per-tunnel keys (spec ipsec.md §7): every (sender, receiver) pair gets its own key, derived from
// the pre-shared key, both tunnel IPs and both boot ids, exactly as Cilium does, so that our nodes
// and Cilium nodes agree on ESP. Throws VeilError on bad inputs (short boot id, bad IP, key > 64 B).
import { createHash } from 'node:crypto';
import { tryParseIp } from '../net/cidr.js';
import { VeilError } from '../util/errors.js';
import type { IpsecKey } from './ipsec-keyfile.js';
import { ENC_CBC_AES, GCM_SALT_LENGTH, hmacIcvLength, type EspTransform, type PackedSa } from '../esp/esp-transform.js';

export const BOOT_ID_LENGTH = 36;

/** IPv4 and IPv4-mapped IPv6 as 4 bytes, other IPv6 as 16 (Go's To4/To16). */
export function canonicalTunnelIp(ip: string): Uint8Array {
  const a = ip.includes('%') ? undefined : tryParseIp(ip);
  if (!a || a.bytes.length === 0 || ip.trim() !== ip) {
    throw new VeilError('IPSEC_BAD_TUNNEL_IP', `invalid tunnel IP "${ip}"`, 'a tunnel IP is a plain IPv4 or IPv6 address');
  }
  if (a.family === 4) return Uint8Array.from(a.bytes);
  const mapped = a.bytes.subarray(0, 10).every((b) => b === 0) && a.bytes[10] === 0xff && a.bytes[11] === 0xff;
  return mapped ? a.bytes.slice(12) : Uint8Array.from(a.bytes);
}

function bootIdBytes(bootId: string): Uint8Array {
  const b = Buffer.from(bootId, 'utf8');
  if (b.length < BOOT_ID_LENGTH) {
    throw new VeilError('IPSEC_BAD_BOOT_ID', 'incorrect size for boot ID, should be at least 36 characters long',
      `got ${JSON.stringify(bootId)}; a boot id is the 36-character UUID of /proc/sys/kernel/random/boot_id`);
  }
  return b.subarray(0, BOOT_ID_LENGTH);
}

/**
 * Cilium's deriveTunnelKey: hash(psk || src || dst || srcBoot[0:36] || dstBoot[0:36]) truncated to
 * the psk's length; SHA-256 for psk <= 32 bytes, else SHA-512. Arguments are always (sender, receiver).
 */
export function deriveTunnelKey(psk: Uint8Array, srcIp: string, dstIp: string, srcBoot: string, dstBoot: string): Uint8Array {
  const src = canonicalTunnelIp(srcIp);
  const dst = canonicalTunnelIp(dstIp);
  const sb = bootIdBytes(srcBoot);
  const db = bootIdBytes(dstBoot);
  if (psk.length > 64) {
    throw new VeilError('IPSEC_KEY_TOO_LONG', `IPsec key of ${psk.length} bytes is too long to derive per-tunnel keys (at most 64)`,
      'use a shorter key (`veil encryption create-key`)');
  }
  const h = createHash(psk.length <= 32 ? 'sha256' : 'sha512');
  for (const part of [psk, src, dst, sb, db]) h.update(part);
  return Uint8Array.from(h.digest().subarray(0, psk.length));
}

/** One end of a tunnel: its tunnel IP and boot id. */
export interface TunnelEnd {
  ip: string;
  bootId: string;
}

/** The ESP transform (keys, salt, ICV length) for packets from `sender` to `receiver`. Each blob is derived separately. */
export function deriveSaTransform(key: IpsecKey, sender: TunnelEnd, receiver: TunnelEnd): EspTransform {
  const derive = (psk: Uint8Array): Uint8Array => deriveTunnelKey(psk, sender.ip, receiver.ip, sender.bootId, receiver.bootId);
  if (key.kind === 'aead') {
    const blob = derive(key.key);
    const cut = blob.length - GCM_SALT_LENGTH; // the salt is the last 4 bytes of the derived blob
    return { kind: 'aead', name: key.name, key: blob.slice(0, cut), salt: blob.slice(cut), icvLength: gcmIcvLength(key) };
  }
  return {
    kind: 'authenc', auth: key.auth, authKey: derive(key.authKey), enc: ENC_CBC_AES, encKey: derive(key.encKey),
    icvLength: hmacIcvLength(key.auth),
  };
}

/** On node `local` with peer `peer`: OUT(local→peer) and IN(peer→local). local's OUT equals peer's IN. */
export function deriveTunnelTransforms(key: IpsecKey, local: TunnelEnd, peer: TunnelEnd): { out: EspTransform; in: EspTransform } {
  return { out: deriveSaTransform(key, local, peer), in: deriveSaTransform(key, peer, local) };
}

const gcmIcvLength = (key: { icvBits: 96 | 128 }): 12 | 16 => (key.icvBits === 96 ? 12 : 16);

/**
 * The SA spec of key `key` whose derived transform (deriveSaTransform's) sits packed at `at` of
 * `material`: what packedSa(key.spi, t) makes of it, from the key alone, since a derived transform
 * has the key's own sizes. The IPsec mode keeps a peer's key material's place only and makes its SA
 * specs when they are sent (two objects a peer less, ~144 B).
 */
export function derivedSaSpec(key: IpsecKey, material: Uint8Array, at: number): PackedSa {
  return key.kind === 'aead'
    ? { spi: key.spi, kind: 'aead', icvLength: gcmIcvLength(key), material, at, keyLength: key.key.length - GCM_SALT_LENGTH }
    : { spi: key.spi, kind: 'authenc', auth: key.auth, icvLength: hmacIcvLength(key.auth), material, at, encKeyLength: key.encKey.length, authKeyLength: key.authKey.length };
}

/** Bytes of key material one transform derived under `key` packs (packedLength of it). */
export function derivedMaterialLength(key: IpsecKey): number {
  return key.kind === 'aead' ? key.key.length : key.encKey.length + key.authKey.length;
}
