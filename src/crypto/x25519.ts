// X25519 (RFC 7748) through node:crypto (OpenSSL): ~10x faster than pure JS, which the handshake
// rate target needs. Keys cross this seam as raw 32-byte arrays; KeyObjects stay inside.
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';

export const X25519_KEY_SIZE = 32;

// Raw keys go in and out as JWK: measured here, JWK import is ~10x faster than DER (pkcs8/spki).
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

/** A private key: the raw clamped bytes, the OpenSSL handle and the derived public key. */
export class X25519PrivateKey {
  readonly raw: Uint8Array;
  readonly publicKey: Uint8Array;
  /** @internal OpenSSL handle; use x25519() instead. */
  readonly keyObject: KeyObject;

  /** raw: 32 bytes; copied and clamped. Throws RangeError on a wrong size. */
  constructor(raw: Uint8Array, keyObject?: KeyObject, publicKey?: Uint8Array) {
    if (raw.length !== X25519_KEY_SIZE) throw new RangeError(`X25519 private key must be 32 bytes, got ${raw.length}`);
    this.raw = clampPrivateKey(Uint8Array.from(raw));
    // OpenSSL derives the public key from d; the x member is required by the JWK shape only.
    this.keyObject = keyObject ?? createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(this.raw).toString('base64url'), x: ZERO_X },
      format: 'jwk',
    });
    this.publicKey = publicKey ?? b64urlToBytes(createPublicKey(this.keyObject).export({ format: 'jwk' }).x);
  }

  /** Overwrites the raw bytes (the OpenSSL copy is freed with the KeyObject). */
  zero(): void {
    this.raw.fill(0);
  }
}

/** A fresh random private key (ephemeral or static). */
export function generatePrivateKey(): X25519PrivateKey {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const raw = b64urlToBytes(jwk.d);
  const key = new X25519PrivateKey(raw, privateKey, b64urlToBytes(jwk.x));
  raw.fill(0);
  return key;
}

/** Public key object for a raw 32-byte public key, for callers that reuse a peer's key. */
export function publicKeyObject(raw: Uint8Array): KeyObject | null {
  if (raw.length !== X25519_KEY_SIZE) return null;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  } catch {
    return null;
  }
}

/**
 * X25519(privateKey, publicKey): the 32-byte shared secret, or null when the public key is bad
 * or the result is all zeros (low-order point), which WireGuard must refuse.
 */
export function x25519(privateKey: X25519PrivateKey, publicKey: Uint8Array | KeyObject): Uint8Array | null {
  const pub = publicKey instanceof Uint8Array ? publicKeyObject(publicKey) : publicKey;
  if (!pub) return null;
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey: privateKey.keyObject, publicKey: pub });
  } catch {
    return null; // OpenSSL refuses an all-zero result itself
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i]!;
  return acc === 0 ? null : new Uint8Array(out.buffer, out.byteOffset, out.length);
}
