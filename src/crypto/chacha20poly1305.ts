// ChaCha20-Poly1305 (RFC 8439) for the single-packet and handshake path: native/noise-crypto.c
// (a reused OpenSSL context, no objects) when the addon is built, else node:crypto. The bulk
// datapath hands raw keys to a native batch AEAD instead.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { noise } from './native-backend.js';

export const AEAD_KEY_SIZE = 32;
export const AEAD_NONCE_SIZE = 12;
export const AEAD_TAG_SIZE = 16;

const EMPTY = new Uint8Array(0);

/** Encrypts plaintext into out (plaintext.length + 16 bytes: ciphertext || tag). */
export function aeadSealInto(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  if (noise) noise.noiseAead(1, out, key, nonce, aad, plaintext);
  else out.set(aeadSeal(key, nonce, plaintext, aad));
  return out;
}

/** Decrypts sealed (ciphertext || tag) into out (sealed.length - 16 bytes); false when it does not authenticate. */
export function aeadOpenInto(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array = EMPTY): boolean {
  if (noise) return sealed.length >= AEAD_TAG_SIZE && noise.noiseAead(0, out, key, nonce, aad, sealed) === 1;
  const body = aeadOpen(key, nonce, sealed, aad);
  if (body) out.set(body);
  return body !== null;
}

/** Encrypts plaintext; returns ciphertext || 16-byte tag. */
export function aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  if (noise) return aeadSealInto(new Uint8Array(plaintext.length + AEAD_TAG_SIZE), key, nonce, plaintext, aad);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_SIZE });
  if (aad.length) c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  const out = new Uint8Array(body.length + AEAD_TAG_SIZE);
  out.set(body, 0);
  out.set(c.getAuthTag(), body.length);
  return out;
}

/** Decrypts ciphertext || tag; returns the plaintext or null when authentication fails. */
export function aeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array | null {
  if (sealed.length < AEAD_TAG_SIZE) return null;
  const bodyLen = sealed.length - AEAD_TAG_SIZE;
  if (noise) {
    const body = new Uint8Array(bodyLen);
    return aeadOpenInto(body, key, nonce, sealed, aad) ? body : null;
  }
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_SIZE });
    d.setAuthTag(sealed.subarray(bodyLen));
    if (aad.length) d.setAAD(aad, { plaintextLength: bodyLen });
    const body = d.update(sealed.subarray(0, bodyLen));
    d.final();
    return new Uint8Array(body.buffer, body.byteOffset, body.length);
  } catch {
    return null;
  }
}

/** WireGuard's transport nonce: 4 zero bytes then the 64-bit little-endian counter. */
export function counterNonce(counter: number, out: Uint8Array = new Uint8Array(AEAD_NONCE_SIZE)): Uint8Array {
  out[0] = out[1] = out[2] = out[3] = 0;
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x1_0000_0000) >>> 0;
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint32(4, lo, true);
  v.setUint32(8, hi, true);
  return out;
}
