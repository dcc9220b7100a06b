// The crypto seam: every primitive veil's protocol cores use, fastest binding chosen once.
//   X25519 and ChaCha20-Poly1305: node:crypto (OpenSSL).
//   BLAKE2s (hash, keyed MAC, HMAC, KDF) and XChaCha20-Poly1305: @noble (no node:crypto binding).
export * from './x25519.js';
export * from './blake2s.js';
export * from './chacha20poly1305.js';
export * from './xchacha20poly1305.js';
export * from './util.js';
