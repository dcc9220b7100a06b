// The crypto seam: every primitive veil's protocol cores use, fastest binding chosen once.
//   X25519, ChaCha20-Poly1305, XChaCha20-Poly1305 (cookie replies), BLAKE2s (plain, keyed) and the
//   Noise KDF: native/noise-crypto.c when the addon is built; else node:crypto (OpenSSL), and
//   @noble for keyed BLAKE2s and XChaCha20-Poly1305 (node:crypto has neither).
export * from './x25519.js';
export * from './blake2s.js';
export * from './chacha20poly1305.js';
export * from './xchacha20poly1305.js';
export * from './util.js';
export { setCryptoBackend, cryptoBackend, type CryptoBackend } from './native-backend.js';
