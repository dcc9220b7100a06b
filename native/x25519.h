// X25519 on raw keys (native/x25519.c): the fastest implementation this process offers.
#ifndef VEIL_X25519_H
#define VEIL_X25519_H
#include <stdbool.h>
#include <stdint.h>

// Bits of x25519_backend().
#define X25519_RAW_LADDER 1       // node's OpenSSL scalar multiplication on raw keys (else EVP)
#define X25519_FE64_FIXED_BASE 2  // public keys by the fixed-base comb on OpenSSL's fe64 routines
#define X25519_FE64_LADDER 4      // x25519_many's own ladder on the fe64 routines (one inversion per batch)
#define X25519_IFMA_LANES 8       // shared secrets on AVX-512 IFMA vector ladders (native/x25519-ifma.c)

#define X25519_MANY_MAX 4

// out = X25519(priv, pub); false (out zeroed) for an unusable key or an all-zero result.
bool x25519_shared(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
// out = the public key of priv.
bool x25519_public(uint8_t out[32], const uint8_t priv[32]);
// Up to X25519_MANY_MAX results at once, paying one field inversion between them: outs[i] =
// X25519(privs[i], pubs[i]), or the public key of privs[i] where pubs[i] is NULL. oks[i] false
// (outs[i] zero) for an all-zero shared secret. True when every oks[i] is.
bool x25519_many(uint8_t *const outs[], const uint8_t *const privs[], const uint8_t *const pubs[], int n, bool oks[]);
int x25519_backend(void);
// How many batches (an x25519_many call or a shared secret) have run on the IFMA lanes (this process).
uint64_t x25519_ifma_batch_count(void);
#endif
