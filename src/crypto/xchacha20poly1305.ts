// XChaCha20-Poly1305 for WireGuard cookie replies (24-byte random nonce). node:crypto lacks it;
// cookie replies are rare (only under load), so pure JS from @noble/ciphers is fine.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export const XAEAD_NONCE_SIZE = 24;

/** Returns ciphertext || tag. */
export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** Returns the plaintext, or null when authentication fails. */
export function xaeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
  } catch {
    return null;
  }
}
