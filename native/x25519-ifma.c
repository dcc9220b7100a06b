// X25519 Montgomery ladders (RFC 7748 §5) on AVX-512 IFMA, up to four at once, one per 64-bit
// lane of 256-bit vectors (Zen 4 runs 512-bit IFMA as two 256-bit halves: ymm costs no lanes).
//
// Field elements mod p = 2^255 - 19 in radix 2^51: five limbs, limb i of the four lanes in one
// vector. vpmadd52luq/huq multiply the low 52 bits of two limbs and add the low/high 52 bits of
// the 104-bit product to an accumulator, so every multiplication input must have limbs below
// 2^52 (a loose limb would be silently truncated): each function below states the bounds it takes
// and gives, and every sum or difference is carried before it is multiplied.
//
// Constant time: the ladder runs all 255 steps for every lane; the only data-dependent operation
// is the conditional swap, done with per-lane all-ones/all-zero masks (and, xor), never a branch
// or a memory address that depends on a key bit. The field operations are straight-line vector
// code with fixed shifts and multiplications whose timing does not depend on their operands.
#include "x25519-ifma.h"
#include <openssl/crypto.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512ifma,avx512dq")

typedef __m256i v4;
typedef struct { v4 l[5]; } fe4; // value = sum of l[i] * 2^(51 i), in each lane

#define MASK51 ((1ULL << 51) - 1)

static inline __attribute__((always_inline)) v4 splat(uint64_t x) { return _mm256_set1_epi64x((long long)x); }

// h = f + g, no carry (limbs add).
static inline __attribute__((always_inline)) void fe4_add(fe4 *h, const fe4 *f, const fe4 *g) {
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_add_epi64(f->l[i], g->l[i]);
}

// h = f - g + 2p, no carry: g's limbs must not exceed 2p's (2^52 - 38, then 2^52 - 2).
static inline __attribute__((always_inline)) void fe4_sub(fe4 *h, const fe4 *f, const fe4 *g) {
  h->l[0] = _mm256_sub_epi64(_mm256_add_epi64(f->l[0], splat(2 * (MASK51 - 18))), g->l[0]);
  _Pragma("GCC unroll 16") for (int i = 1; i < 5; i++) h->l[i] = _mm256_sub_epi64(_mm256_add_epi64(f->l[i], splat(2 * MASK51)), g->l[i]);
}

// One parallel carry pass: limbs below 2^63 in, below 2^51 + 19 * 2^12 out.
static inline __attribute__((always_inline)) void fe4_carry(fe4 *h) {
  const v4 m = splat(MASK51);
  v4 c[5];
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) c[i] = _mm256_srli_epi64(h->l[i], 51);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_and_si256(h->l[i], m);
  h->l[0] = _mm256_add_epi64(h->l[0], _mm256_mullo_epi64(c[4], splat(19)));
  _Pragma("GCC unroll 16") for (int i = 1; i < 5; i++) h->l[i] = _mm256_add_epi64(h->l[i], c[i - 1]);
}

// z[0..9] (limbs below 2^58) -> h, limbs below 2^51 except h[1] <= 2^51.
static inline __attribute__((always_inline)) void fe4_reduce(fe4 *h, v4 z[10]) {
  const v4 m = splat(MASK51), n19 = splat(19);
  // 2^255 = 19 mod p: the upper five limbs fold onto the lower five (below 2^58 + 19 * 2^58 < 2^63).
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) z[i] = _mm256_add_epi64(z[i], _mm256_mullo_epi64(z[i + 5], n19));
  v4 c;
  _Pragma("GCC unroll 16") for (int i = 0; i < 4; i++) {
    c = _mm256_srli_epi64(z[i], 51);
    z[i] = _mm256_and_si256(z[i], m);
    z[i + 1] = _mm256_add_epi64(z[i + 1], c);
  }
  c = _mm256_srli_epi64(z[4], 51); // below 2^13
  z[4] = _mm256_and_si256(z[4], m);
  z[0] = _mm256_add_epi64(z[0], _mm256_mullo_epi64(c, n19));
  c = _mm256_srli_epi64(z[0], 51); // 0 or 1
  z[0] = _mm256_and_si256(z[0], m);
  z[1] = _mm256_add_epi64(z[1], c);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = z[i];
}

// h = f g; f's and g's limbs below 2^52. The low half of f_i g_j lands at limb i + j, the high
// half (bits 52..103) at limb i + j + 1 doubled (radix 2^51).
static inline __attribute__((always_inline)) void fe4_mul(fe4 *h, const fe4 *f, const fe4 *g) {
  v4 lo[10], hi[10];
  const v4 zero = _mm256_setzero_si256();
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) lo[k] = hi[k] = zero;
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++)
    _Pragma("GCC unroll 16") for (int j = 0; j < 5; j++) {
      lo[i + j] = _mm256_madd52lo_epu64(lo[i + j], f->l[i], g->l[j]);
      hi[i + j + 1] = _mm256_madd52hi_epu64(hi[i + j + 1], f->l[i], g->l[j]);
    }
  // Each lo below 5 * 2^52, each hi below 5 * 2^52: z below 15 * 2^52.
  _Pragma("GCC unroll 16") for (int k = 1; k < 10; k++) lo[k] = _mm256_add_epi64(lo[k], _mm256_add_epi64(hi[k], hi[k]));
  fe4_reduce(h, lo);
}

// h = f^2; f's limbs below 2^52. The cross products f_i f_j (i < j) once each, then doubled.
static inline __attribute__((always_inline)) void fe4_sqr(fe4 *h, const fe4 *f) {
  v4 lo[10], hi[10], dlo[10], dhi[10];
  const v4 zero = _mm256_setzero_si256();
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) lo[k] = hi[k] = dlo[k] = dhi[k] = zero;
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) {
    lo[2 * i] = _mm256_madd52lo_epu64(lo[2 * i], f->l[i], f->l[i]);
    hi[2 * i + 1] = _mm256_madd52hi_epu64(hi[2 * i + 1], f->l[i], f->l[i]);
    _Pragma("GCC unroll 16") for (int j = i + 1; j < 5; j++) {
      dlo[i + j] = _mm256_madd52lo_epu64(dlo[i + j], f->l[i], f->l[j]);
      dhi[i + j + 1] = _mm256_madd52hi_epu64(dhi[i + j + 1], f->l[i], f->l[j]);
    }
  }
  // z_k = lo_k + 2 hi_k + 2 dlo_k + 4 dhi_k: below (1 + 2 + 4 + 8) * 2^52 * 3.
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) {
    v4 d = _mm256_add_epi64(dlo[k], _mm256_add_epi64(dhi[k], dhi[k]));
    v4 t = _mm256_add_epi64(hi[k], d);
    lo[k] = _mm256_add_epi64(lo[k], _mm256_add_epi64(t, t));
  }
  fe4_reduce(h, lo);
}

// h = 121666 f; f's limbs below 2^52. Output limbs below 2^51 + 2^18.
static inline __attribute__((always_inline)) void fe4_mul121666(fe4 *h, const fe4 *f) {
  const v4 a = splat(121666), zero = _mm256_setzero_si256();
  v4 lo[5], hi[5];
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) {
    lo[i] = _mm256_madd52lo_epu64(zero, f->l[i], a);
    hi[i] = _mm256_madd52hi_epu64(zero, f->l[i], a); // below 2^17
  }
  h->l[0] = _mm256_add_epi64(lo[0], _mm256_mullo_epi64(hi[4], splat(38)));
  _Pragma("GCC unroll 16") for (int i = 1; i < 5; i++) h->l[i] = _mm256_add_epi64(lo[i], _mm256_add_epi64(hi[i - 1], hi[i - 1]));
  fe4_carry(h);
}

// Swaps f and g in the lanes where mask is all ones.
static inline __attribute__((always_inline)) void fe4_cswap(fe4 *f, fe4 *g, v4 mask) {
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) {
    v4 t = _mm256_and_si256(mask, _mm256_xor_si256(f->l[i], g->l[i]));
    f->l[i] = _mm256_xor_si256(f->l[i], t);
    g->l[i] = _mm256_xor_si256(g->l[i], t);
  }
}

__attribute__((noinline)) static void ladder4(fe4 *x2, fe4 *z2, const fe4 *x1, const uint64_t k[4][4]) {
  fe4 x3 = *x1, z3, a, b, c, d, da, cb, aa, bb, e, t;
  const v4 zero = _mm256_setzero_si256(), one = _mm256_set1_epi64x(1);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) x2->l[i] = z2->l[i] = z3.l[i] = zero;
  x2->l[0] = z3.l[0] = one;
  v4 words[4];
  _Pragma("GCC unroll 16") for (int w = 0; w < 4; w++) words[w] = _mm256_set_epi64x((long long)k[3][w], (long long)k[2][w], (long long)k[1][w], (long long)k[0][w]);
  v4 swap = zero;
  for (int pos = 254; pos >= 0; pos--) {
    v4 bit = _mm256_and_si256(_mm256_srl_epi64(words[pos >> 6], _mm_cvtsi32_si128(pos & 63)), one);
    swap = _mm256_xor_si256(swap, bit);
    v4 mask = _mm256_sub_epi64(zero, swap);
    fe4_cswap(x2, &x3, mask);
    fe4_cswap(z2, &z3, mask);
    swap = bit;
    fe4_add(&a, x2, z2); fe4_carry(&a);
    fe4_sub(&b, x2, z2); fe4_carry(&b);
    fe4_add(&c, &x3, &z3); fe4_carry(&c);
    fe4_sub(&d, &x3, &z3); fe4_carry(&d);
    fe4_mul(&da, &d, &a);
    fe4_mul(&cb, &c, &b);
    fe4_sqr(&aa, &a);
    fe4_sqr(&bb, &b);
    fe4_add(&t, &da, &cb); fe4_carry(&t); fe4_sqr(&x3, &t);
    fe4_sub(&t, &da, &cb); fe4_carry(&t); fe4_sqr(&t, &t); fe4_mul(&z3, x1, &t);
    fe4_mul(x2, &aa, &bb);
    fe4_sub(&e, &aa, &bb); fe4_carry(&e);
    fe4_mul121666(&t, &e);
    fe4_add(&t, &t, &bb); fe4_carry(&t);
    fe4_mul(z2, &e, &t);
  }
  v4 mask = _mm256_sub_epi64(zero, swap);
  fe4_cswap(x2, &x3, mask);
  fe4_cswap(z2, &z3, mask);
  // Intermediate secrets off the stack (what the compiler kept there).
  OPENSSL_cleanse(&x3, sizeof x3); OPENSSL_cleanse(&z3, sizeof z3);
  OPENSSL_cleanse(&a, sizeof a); OPENSSL_cleanse(&b, sizeof b); OPENSSL_cleanse(&c, sizeof c); OPENSSL_cleanse(&d, sizeof d);
  OPENSSL_cleanse(&da, sizeof da); OPENSSL_cleanse(&cb, sizeof cb); OPENSSL_cleanse(&aa, sizeof aa); OPENSSL_cleanse(&bb, sizeof bb);
  OPENSSL_cleanse(&e, sizeof e); OPENSSL_cleanse(&t, sizeof t); OPENSSL_cleanse(words, sizeof words);
}

#pragma GCC pop_options

static void limbs_from_bytes(uint64_t l[5], const uint8_t s[32]) {
  uint64_t w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = 0;
    for (int j = 0; j < 8; j++) w[i] |= (uint64_t)s[8 * i + j] << (8 * j);
  }
  l[0] = w[0] & MASK51;
  l[1] = ((w[0] >> 51) | (w[1] << 13)) & MASK51;
  l[2] = ((w[1] >> 38) | (w[2] << 26)) & MASK51;
  l[3] = ((w[2] >> 25) | (w[3] << 39)) & MASK51;
  l[4] = (w[3] >> 12) & MASK51; // RFC 7748: the top bit of u is ignored
}

// Five limbs (below 2^52 each, value below 2^256) -> four 64-bit words.
static void limbs_to_words(uint64_t w[4], const uint64_t l[5]) {
  unsigned __int128 acc = l[0];
  acc += (unsigned __int128)l[1] << 51;
  w[0] = (uint64_t)acc; acc >>= 64;
  acc += (unsigned __int128)l[2] << 38;
  w[1] = (uint64_t)acc; acc >>= 64;
  acc += (unsigned __int128)l[3] << 25;
  w[2] = (uint64_t)acc; acc >>= 64;
  acc += (unsigned __int128)l[4] << 12;
  w[3] = (uint64_t)acc;
}

bool x25519_ifma_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512ifma") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

void x25519_ifma_ladders(uint64_t x[][4], uint64_t z[][4], const uint8_t *const scalars[], const uint8_t *const points[], int n) {
  uint64_t k[4][4], u[5][4], out[5][4];
  fe4 x1, x2, z2;
  memset(k, 0, sizeof k);
  memset(u, 0, sizeof u);
  for (int lane = 0; lane < n && lane < 4; lane++) {
    uint8_t e[32];
    memcpy(e, scalars[lane], 32);
    e[0] &= 248; e[31] &= 127; e[31] |= 64;
    for (int w = 0; w < 4; w++) {
      k[lane][w] = 0;
      for (int j = 0; j < 8; j++) k[lane][w] |= (uint64_t)e[8 * w + j] << (8 * j);
    }
    OPENSSL_cleanse(e, sizeof e);
    uint64_t l[5];
    limbs_from_bytes(l, points[lane]);
    for (int i = 0; i < 5; i++) u[i][lane] = l[i];
  }
  for (int i = 0; i < 5; i++) memcpy(&x1.l[i], u[i], 32);
  ladder4(&x2, &z2, &x1, (const uint64_t(*)[4])k);
  for (int lane = 0; lane < n && lane < 4; lane++) {
    uint64_t lx[5], lz[5];
    for (int i = 0; i < 5; i++) { memcpy(out[i], &x2.l[i], 32); lx[i] = out[i][lane]; }
    limbs_to_words(x[lane], lx);
    for (int i = 0; i < 5; i++) { memcpy(out[i], &z2.l[i], 32); lz[i] = out[i][lane]; }
    limbs_to_words(z[lane], lz);
  }
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(&x2, sizeof x2); OPENSSL_cleanse(&z2, sizeof z2); OPENSSL_cleanse(out, sizeof out);
}

#else

bool x25519_ifma_supported(void) { return false; }
void x25519_ifma_ladders(uint64_t x[][4], uint64_t z[][4], const uint8_t *const scalars[], const uint8_t *const points[], int n) {}

#endif
