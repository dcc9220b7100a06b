// X25519 on raw keys (native/x25519.c): the fastest implementation this process offers.
#ifndef VEIL_X25519_H
#define VEIL_X25519_H
#include <stdbool.h>
#include <stdint.h>

// Bits of x25519_backend().
#define X25519_RAW_LADDER 1       // node's OpenSSL scalar multiplication on raw keys (else EVP)
#define X25519_FE64_FIXED_BASE 2  // public keys by the fixed-base comb on OpenSSL's fe64 routines

// out = X25519(priv, pub); false (out zeroed) for an unusable key or an all-zero result.
bool x25519_shared(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
// out = the public key of priv.
bool x25519_public(uint8_t out[32], const uint8_t priv[32]);
int x25519_backend(void);
#endif
