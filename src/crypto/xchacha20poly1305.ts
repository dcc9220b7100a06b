// XChaCha20-Poly1305 for WireGuard cookie replies (24-byte random nonce): native/noise-crypto.c
// (HChaCha20, then OpenSSL's ChaCha20-Poly1305) when the addon is built; @noble/ciphers otherwise
// (node:crypto lacks it). Native matters under a handshake flood: every cookie reply seals one.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { noise } from './native-backend.js';

export const XAEAD_NONCE_SIZE = 24;

/** Returns ciphertext || tag. */
export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  if (noise && nonce.length === XAEAD_NONCE_SIZE) {
    const sealed = new Uint8Array(plaintext.length + 16);
    noise.noiseAead(1, sealed, key, nonce, aad, plaintext);
    return sealed;
  }
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** Returns the plaintext, or null when authentication fails. */
export function xaeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (noise && nonce.length === XAEAD_NONCE_SIZE && key.length === 32) {
    if (sealed.length < 16) return null;
    const body = new Uint8Array(sealed.length - 16);
    return noise.noiseAead(0, body, key, nonce, aad, sealed) === 1 ? body : null;
  }
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
  } catch {
    return null;
  }
}
