// The handshake primitives of native/noise-crypto.c that native/noise-handshake.c composes.
#ifndef VEIL_NOISE_CRYPTO_H
#define VEIL_NOISE_CRYPTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// out = BLAKE2s(a || b || c) with outlen (1..32) bytes, keyed when keylen > 0 (at most 32).
void noise_blake2s_raw(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const uint8_t *c, size_t clen);
// Noise's HKDF over HMAC-BLAKE2s: outlen / 32 (1..3) outputs into out (which may alias ck).
void noise_hkdf(uint8_t *out, size_t outlen, const uint8_t ck[32], const uint8_t *in, size_t inlen);
// ChaCha20-Poly1305 (12-byte nonce). Seal: out = inlen + 16. Open: out = inlen - 16; false (out
// zeroed) when the tag does not verify.
bool chacha_poly(int enc, uint8_t *out, size_t outlen, const uint8_t *key, const uint8_t *nonce,
                 const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen);
#endif
