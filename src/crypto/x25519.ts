// X25519 (RFC 7748). Native (native/noise-crypto.c: OpenSSL's scalar multiplication on raw keys,
// no key objects) when the addon is built; otherwise node:crypto KeyObjects imported as JWK
// (measured ~10x faster than DER). Keys cross this seam as raw 32-byte arrays.
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { noise } from './native-backend.js';

export const X25519_KEY_SIZE = 32;

const ZERO_X = Buffer.alloc(X25519_KEY_SIZE).toString('base64url');

function b64urlToBytes(s: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(s ?? '', 'base64url'));
}

/** Clamps a private scalar in place (RFC 7748 §5), as `wg genkey` and Cilium do. */
export function clampPrivateKey(k: Uint8Array): Uint8Array {
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

function importPrivate(raw: Uint8Array): KeyObject {
  // OpenSSL derives the public key from d; the x member is required by the JWK shape only.
  return createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(raw).toString('base64url'), x: ZERO_X }, format: 'jwk' });
}

/** A private key: the raw clamped bytes and the derived public key. */
export class X25519PrivateKey {
  readonly raw: Uint8Array;
  readonly publicKey: Uint8Array;
  private handle: KeyObject | undefined;

  /** raw: 32 bytes; copied and clamped. Throws RangeError on a wrong size. */
  constructor(raw: Uint8Array, keyObject?: KeyObject, publicKey?: Uint8Array) {
    if (raw.length !== X25519_KEY_SIZE) throw new RangeError(`X25519 private key must be 32 bytes, got ${raw.length}`);
    this.raw = clampPrivateKey(Uint8Array.from(raw));
    this.handle = keyObject;
    if (publicKey) this.publicKey = publicKey;
    else if (noise) {
      this.publicKey = new Uint8Array(X25519_KEY_SIZE);
      noise.noiseX25519Public(this.publicKey, this.raw);
    } else {
      this.publicKey = b64urlToBytes(createPublicKey(this.keyObject).export({ format: 'jwk' }).x);
    }
  }

  /** @internal OpenSSL handle for the node:crypto path, imported on first use. */
  get keyObject(): KeyObject {
    return (this.handle ??= importPrivate(this.raw));
  }

  /** Overwrites the raw bytes (an OpenSSL copy, if any, is freed with the KeyObject). */
  zero(): void {
    this.raw.fill(0);
    this.handle = undefined;
  }
}

/** A fresh random private key (ephemeral or static). */
export function generatePrivateKey(): X25519PrivateKey {
  if (noise) {
    const raw = new Uint8Array(X25519_KEY_SIZE);
    const pub = new Uint8Array(X25519_KEY_SIZE);
    if (noise.noiseX25519Generate(raw, pub) !== 1) throw new Error('X25519 key generation failed (OpenSSL RNG)');
    const key = new X25519PrivateKey(raw, undefined, pub);
    raw.fill(0);
    return key;
  }
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const raw = b64urlToBytes(jwk.d);
  const key = new X25519PrivateKey(raw, privateKey, b64urlToBytes(jwk.x));
  raw.fill(0);
  return key;
}

/** Public key object for a raw 32-byte public key (node:crypto path). */
export function publicKeyObject(raw: Uint8Array): KeyObject | null {
  if (raw.length !== X25519_KEY_SIZE) return null;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  } catch {
    return null;
  }
}

/**
 * out = X25519(privateKey, publicKey). False when the public key is bad or the result is all
 * zeros (low-order point), which WireGuard must refuse; out is then zero.
 */
export function x25519Into(out: Uint8Array, privateKey: X25519PrivateKey, publicKey: Uint8Array): boolean {
  if (publicKey.length !== X25519_KEY_SIZE) {
    out.fill(0);
    return false;
  }
  if (noise) return noise.noiseX25519(out, privateKey.raw, publicKey) === 1;
  const pub = publicKeyObject(publicKey);
  let secret: Buffer | null = null;
  try {
    if (pub) secret = diffieHellman({ privateKey: privateKey.keyObject, publicKey: pub });
  } catch {
    secret = null; // OpenSSL refuses an all-zero result itself
  }
  let acc = 0;
  if (secret) for (let i = 0; i < secret.length; i++) acc |= secret[i]!;
  if (!secret || acc === 0) {
    out.fill(0);
    return false;
  }
  out.set(secret);
  secret.fill(0);
  return true;
}

/** X25519(privateKey, publicKey): the 32-byte shared secret, or null (see x25519Into). */
export function x25519(privateKey: X25519PrivateKey, publicKey: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(X25519_KEY_SIZE);
  return x25519Into(out, privateKey, publicKey) ? out : null;
}
