// X25519 Montgomery ladders on AVX-512 IFMA, up to four in parallel lanes (native/x25519-ifma.c).
#ifndef VEIL_X25519_IFMA_H
#define VEIL_X25519_IFMA_H
#include <stdbool.h>
#include <stdint.h>

// True when this CPU (and OS) runs AVX-512 IFMA, VL and DQ.
bool x25519_ifma_supported(void);
// For lane i < n <= 4: u(clamp(scalars[i]) * P) = x[i] / z[i] for P of u-coordinate points[i],
// x and z as four little-endian 64-bit words (below 2^256, not fully reduced). Call only where
// x25519_ifma_supported().
void x25519_ifma_ladders(uint64_t x[][4], uint64_t z[][4], const uint8_t *const scalars[], const uint8_t *const points[], int n);
#endif
