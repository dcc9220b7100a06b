// The crypto seam: every primitive veil's protocol cores use, fastest binding chosen once.
//   X25519, ChaCha20-Poly1305, BLAKE2s-256 and HMAC-BLAKE2s (so the KDF): node:crypto (OpenSSL).
//   Keyed BLAKE2s-128 (mac1/mac2/cookies) and XChaCha20-Poly1305: @noble (no node:crypto binding).
export * from './x25519.js';
export * from './blake2s.js';
export * from './chacha20poly1305.js';
export * from './xchacha20poly1305.js';
export * from './util.js';
