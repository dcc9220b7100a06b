// The ESP transforms veil implements, and the sizes that follow from each. The key file names them
// the way the Linux kernel (and so Cilium) does; these are the only two families we accept.

export const AEAD_GCM = 'rfc4106(gcm(aes))';
export const AUTH_SHA256 = 'hmac(sha256)';
export const AUTH_SHA512 = 'hmac(sha512)';
export const ENC_CBC_AES = 'cbc(aes)';

export type AuthName = typeof AUTH_SHA256 | typeof AUTH_SHA512;

/** AES-GCM per RFC 4106: key of 16/24/32 bytes, 4-byte salt, ICV 12 or 16 bytes. */
export interface GcmTransform {
  kind: 'aead';
  name: typeof AEAD_GCM;
  key: Uint8Array;
  salt: Uint8Array;
  icvLength: 12 | 16;
}

/**
 * AES-CBC (RFC 3602) with HMAC-SHA-256/512. The ICV is what the kernel makes of Cilium's keys:
 * Cilium passes 'auth hmac(sha256)' without a truncation length, so the kernel's default applies,
 * 96 bits for SHA-256 (not RFC 4868's 128) and 256 for SHA-512 (checked against the kernel in
 * test/e2e/kernel-ipsec.test.ts).
 */
export interface CbcHmacTransform {
  kind: 'authenc';
  auth: AuthName;
  authKey: Uint8Array;
  enc: typeof ENC_CBC_AES;
  encKey: Uint8Array;
  icvLength: 12 | 32;
}

export type EspTransform = GcmTransform | CbcHmacTransform;

/**
 * A transform with its key material at `at` in `material`, a buffer it may share with other
 * transforms (AES-GCM: key || salt; CBC+HMAC: encryption key || authentication key). Peer specs
 * carry keys so (one buffer per peer, not a typed array per key and salt: ~96 B each, four per peer
 * and key, on both threads) and SAs keep them so (security-association.ts).
 */
export interface PackedGcmTransform {
  kind: 'aead';
  /** Constant: packTransforms() writes it, an SA spec (packedSa) leaves it out (8 B an SA, both threads). */
  name?: typeof AEAD_GCM;
  icvLength: 12 | 16;
  material: Uint8Array;
  at: number;
  keyLength: number;
}

export interface PackedCbcHmacTransform {
  kind: 'authenc';
  auth: AuthName;
  /** As PackedGcmTransform.name. */
  enc?: typeof ENC_CBC_AES;
  icvLength: 12 | 32;
  material: Uint8Array;
  at: number;
  encKeyLength: number;
  authKeyLength: number;
}

export type PackedTransform = PackedGcmTransform | PackedCbcHmacTransform;

/**
 * An SA's SPI and its packed transform as one object: what the agent's peer specs carry to the
 * datapath worker (messages.ts EspSaSpec). An object for the SPI and one for its transform were
 * ~112 B an SA, on the agent's side and again in the worker's message.
 */
export type PackedSa = PackedTransform & { spi: number };

/** The SA of `spi` under `t`'s keys (the same material, not a copy), its fields always in one order, without the constant names. */
export function packedSa(spi: number, t: PackedTransform): PackedSa {
  return t.kind === 'aead'
    ? { spi, kind: 'aead', icvLength: t.icvLength, material: t.material, at: t.at, keyLength: t.keyLength }
    : { spi, kind: 'authenc', auth: t.auth, icvLength: t.icvLength, material: t.material, at: t.at, encKeyLength: t.encKeyLength, authKeyLength: t.authKeyLength };
}

/** The two parts of a transform's key material, in the order a packed transform holds them. */
export function keyParts(t: EspTransform): [Uint8Array, Uint8Array] {
  return t.kind === 'aead' ? [t.key, t.salt] : [t.encKey, t.authKey];
}

/** Bytes of key material a packed transform holds. */
export function packedLength(t: PackedTransform): number {
  return t.kind === 'aead' ? t.keyLength + GCM_SALT_LENGTH : t.encKeyLength + t.authKeyLength;
}

/** A packed transform's key material (a view into its buffer). */
export function packedMaterial(t: PackedTransform): Uint8Array {
  return t.material.subarray(t.at, t.at + packedLength(t));
}

/**
 * Copies of the transforms with their key material packed one after the other into one new buffer,
 * or into `into` from `from` on (key-material-arena.ts: a chunk shared with other peers' keys).
 */
export function packTransforms(ts: readonly EspTransform[], into?: Uint8Array, from = 0): PackedTransform[] {
  let length = 0;
  for (const t of ts) for (const part of keyParts(t)) length += part.length;
  const material = into ?? new Uint8Array(length);
  let at = into ? from : 0;
  return ts.map((t): PackedTransform => {
    const [first, second] = keyParts(t);
    material.set(first, at);
    material.set(second, at + first.length);
    const p: PackedTransform = t.kind === 'aead'
      ? { kind: 'aead', name: AEAD_GCM, icvLength: t.icvLength, material, at, keyLength: first.length }
      : { kind: 'authenc', auth: t.auth, enc: ENC_CBC_AES, icvLength: t.icvLength, material, at, encKeyLength: first.length, authKeyLength: second.length };
    at += first.length + second.length;
    return p;
  });
}

export const GCM_SALT_LENGTH = 4;
/** RFC 4106 explicit IV: 8 bytes on the wire (we put the 64-bit sequence number there). */
export const GCM_IV_LENGTH = 8;
export const CBC_IV_LENGTH = 16;
export const AES_KEY_LENGTHS: readonly number[] = [16, 24, 32];
/** HMAC keys: at least what `create-key` generates for SHA-256 (16 bytes), at most what derivation handles. */
export const HMAC_KEY_MIN = 16;
export const HMAC_KEY_MAX = 64;

/** The kernel's default ICV truncation for the algorithm (net/xfrm/xfrm_algo.c), which Cilium's keys get. */
export function hmacIcvLength(auth: AuthName): 12 | 32 {
  return auth === AUTH_SHA256 ? 12 : 32;
}

export function ivLength(t: EspTransform): number {
  return t.kind === 'aead' ? GCM_IV_LENGTH : CBC_IV_LENGTH;
}

/** The length the encrypted part (payload + padding + 2) must be a multiple of. */
export function paddingBlock(t: EspTransform): number {
  return t.kind === 'aead' ? 4 : 16;
}

/** node:crypto cipher name for the transform. */
export function cipherName(t: EspTransform): string {
  if (t.kind === 'aead') return `aes-${t.key.length * 8}-gcm`;
  return `aes-${t.encKey.length * 8}-cbc`;
}

/** Human description, e.g. for `veil ipsec state`: "rfc4106(gcm(aes)) 128-bit key, ICV 128". */
export function describeTransform(t: EspTransform): string {
  if (t.kind === 'aead') return `${t.name} ${t.key.length * 8}-bit key, ICV ${t.icvLength * 8}`;
  return `${t.auth} (ICV ${t.icvLength * 8}) + ${t.enc} ${t.encKey.length * 8}-bit key`;
}
