// X25519 Montgomery ladders (RFC 7748 §5) on AVX-512 IFMA, up to four at once in the four 64-bit
// lanes of 256-bit vectors (on Zen 4 a 512-bit vpmadd52 costs two 256-bit ones: ymm loses nothing).
// One or two ladders (a lone shared secret, a handshake message's ee and se) take a pair of lanes
// each, so that one step costs five vector multiplications (ladder2); three or four take a lane
// each, nine multiplications a step (ladder4). A vector multiplication costs ~50 vpmadd52 whatever
// the lanes hold: on the EPYC (Zen 4) here a pair of ladders takes ~24 us, one fe64 ladder ~30.
//
// Field elements mod p = 2^255 - 19 in radix 2^51: five limbs, limb i of the four lanes in one
// vector. vpmadd52luq/huq multiply the low 52 bits of two limbs and add the low/high 52 bits of
// the 104-bit product to an accumulator, so every multiplication input must have limbs below
// 2^52 (a loose limb would be silently truncated): each function below states the bounds it takes
// and gives, and every sum or difference is carried before it is multiplied.
//
// Constant time: the ladders run all 255 steps for every lane, whatever the keys; the scalar bit
// only ever becomes a per-lane all-ones/all-zero mask for the conditional swap (xor, and, shuffle,
// blend), never a branch or a memory address. The field operations are straight-line vector code:
// fixed shifts, adds, masks and vpmadd52/vpmullq multiplications, whose timing does not depend on
// their operands; carries are always propagated in full, never "only when needed".
#include "x25519-ifma.h"
#include <openssl/crypto.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) // GCC's target pragma; elsewhere the scalar path serves
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512ifma,avx512dq")
// Scheduling before register allocation, minding register pressure (off at -O2 on x86): it
// interleaves the independent products of a step, ~15 % off a ladder here (20.1 -> 16.6 us a pair).
#pragma GCC optimize("schedule-insns", "sched-pressure")

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

// 19 in every lane, hidden from the optimiser: it turns a product by the constant 19 into two
// shifts and three additions, and the ladder is bound by vector ALU slots, so one vpmullq (the
// same time for any operand) is cheaper: ~5 % off a ladder here.
static inline __attribute__((always_inline)) v4 times19(void) {
  v4 n19 = splat(19);
  __asm__("" : "+v"(n19));
  return n19;
}

// One parallel carry pass: limbs below 2^63 in, below 2^51 + 19 * 2^12 out.
static inline __attribute__((always_inline)) void fe4_carry(fe4 *h) {
  const v4 m = splat(MASK51);
  v4 c[5];
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) c[i] = _mm256_srli_epi64(h->l[i], 51);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_and_si256(h->l[i], m);
  h->l[0] = _mm256_add_epi64(h->l[0], _mm256_mullo_epi64(c[4], times19()));
  _Pragma("GCC unroll 16") for (int i = 1; i < 5; i++) h->l[i] = _mm256_add_epi64(h->l[i], c[i - 1]);
}

// z[0..9] (limbs below 2^58) -> h, limbs below 2^51 + 19 * 2^12 (fit to multiply, to subtract
// from, and for limbs_to_words). One parallel carry pass, not a chain from limb to limb: a ladder
// step waits on three products in a row, and the chain's latency came on top of each.
static inline __attribute__((always_inline)) void fe4_reduce(fe4 *h, v4 z[10]) {
  const v4 n19 = times19();
  // 2^255 = 19 mod p: the upper five limbs fold onto the lower five (below 2^58 + 19 * 2^58 < 2^63).
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_add_epi64(z[i], _mm256_mullo_epi64(z[i + 5], n19));
  fe4_carry(h);
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

// h = f^2; f's limbs below 2^52. The cross products f_i f_j (i < j) once each. The terms come in
// by weight into one set of accumulators, doubling between: high halves of the cross products
// (weight 4 in the end), then their low halves and the squares' high halves (weight 2), then the
// squares' low halves. Fewer vector additions than summing four sets at the end (~4 % a ladder).
static inline __attribute__((always_inline)) void fe4_sqr(fe4 *h, const fe4 *f) {
  v4 z[10];
  const v4 zero = _mm256_setzero_si256();
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) z[k] = zero;
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++)
    _Pragma("GCC unroll 16") for (int j = i + 1; j < 5; j++) z[i + j + 1] = _mm256_madd52hi_epu64(z[i + j + 1], f->l[i], f->l[j]);
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) z[k] = _mm256_add_epi64(z[k], z[k]);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) {
    z[2 * i + 1] = _mm256_madd52hi_epu64(z[2 * i + 1], f->l[i], f->l[i]);
    _Pragma("GCC unroll 16") for (int j = i + 1; j < 5; j++) z[i + j] = _mm256_madd52lo_epu64(z[i + j], f->l[i], f->l[j]);
  }
  _Pragma("GCC unroll 16") for (int k = 0; k < 10; k++) z[k] = _mm256_add_epi64(z[k], z[k]);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) z[2 * i] = _mm256_madd52lo_epu64(z[2 * i], f->l[i], f->l[i]);
  // z_k below (2 * 2 + 1 + 2) * 2 * 2^52 + 2^52 = 15 * 2^52 (at most two cross products a limb).
  fe4_reduce(h, z);
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

// Lane l's clamped scalar as words[w] lane l = k[l][w].
static inline __attribute__((always_inline)) void fe4_scalar_words(v4 words[4], const uint64_t k[4][4]) {
  _Pragma("GCC unroll 16") for (int w = 0; w < 4; w++) words[w] = _mm256_set_epi64x((long long)k[3][w], (long long)k[2][w], (long long)k[1][w], (long long)k[0][w]);
}

// RFC 7748's swap for step pos: all ones in the lanes where bit pos of the scalar differs from the
// bit before (kept in *prev), the only use a scalar bit is ever put to.
static inline __attribute__((always_inline)) v4 swap_mask(const v4 words[4], int pos, v4 *prev) {
  v4 bit = _mm256_and_si256(_mm256_srl_epi64(words[pos >> 6], _mm_cvtsi32_si128(pos & 63)), _mm256_set1_epi64x(1));
  v4 mask = _mm256_sub_epi64(_mm256_setzero_si256(), _mm256_xor_si256(*prev, bit));
  *prev = bit;
  return mask;
}

__attribute__((noinline)) static void ladder4(fe4 *x2, fe4 *z2, const fe4 *x1, const uint64_t k[4][4]) {
  fe4 x3 = *x1, z3, a, b, c, d, da, cb, aa, bb, e, t;
  const v4 zero = _mm256_setzero_si256(), one = _mm256_set1_epi64x(1);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) x2->l[i] = z2->l[i] = z3.l[i] = zero;
  x2->l[0] = z3.l[0] = one;
  v4 words[4], prev = zero;
  fe4_scalar_words(words, k);
  for (int pos = 254; pos >= 0; pos--) {
    v4 mask = swap_mask(words, pos, &prev);
    fe4_cswap(x2, &x3, mask);
    fe4_cswap(z2, &z3, mask);
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
  v4 mask = _mm256_sub_epi64(zero, prev);
  fe4_cswap(x2, &x3, mask);
  fe4_cswap(z2, &z3, mask);
  // Intermediate secrets off the stack (what the compiler kept there).
  OPENSSL_cleanse(&x3, sizeof x3); OPENSSL_cleanse(&z3, sizeof z3);
  OPENSSL_cleanse(&a, sizeof a); OPENSSL_cleanse(&b, sizeof b); OPENSSL_cleanse(&c, sizeof c); OPENSSL_cleanse(&d, sizeof d);
  OPENSSL_cleanse(&da, sizeof da); OPENSSL_cleanse(&cb, sizeof cb); OPENSSL_cleanse(&aa, sizeof aa); OPENSSL_cleanse(&bb, sizeof bb);
  OPENSSL_cleanse(&e, sizeof e); OPENSSL_cleanse(&t, sizeof t); OPENSSL_cleanse(words, sizeof words);
}


// The lanes of one vector in pairs, (0, 1) and (2, 3): swaps each pair, or takes the odd lanes from g.
static inline __attribute__((always_inline)) void fe4_swap_pairs(fe4 *h, const fe4 *f) {
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_shuffle_epi32(f->l[i], 0x4e);
}
static inline __attribute__((always_inline)) void fe4_odd_from(fe4 *h, const fe4 *f, const fe4 *g) {
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) h->l[i] = _mm256_blend_epi32(f->l[i], g->l[i], 0xcc);
}

// Two ladders, each on a pair of lanes: lane 2j holds ladder j's (x2 : z2), lane 2j + 1 its
// (x3 : z3), so one step is five vector multiplications instead of nine (ladder4 runs nine with one
// ladder a lane). The step, per pair [lane 0, lane 1]:
//   S = X + Z = [A, C], B_D = X - Z = [B, D]; [DA, CB] = S [D, B]; [AA, BB] = [A, B]^2;
//   [T, X3] = [DA - CB, DA + CB]^2; X2 = AA BB; E = AA - BB; G = BB + 121666 E;
//   X = [X2, X3], Z = [E G, x1 T]   (RFC 7748 §5, with OpenSSL's BB + 121666 E form of z2).
__attribute__((noinline)) static void ladder2(fe4 *xout, fe4 *zout, const fe4 *x1, const uint64_t k[4][4]) {
  fe4 X, Z, Xs, t, s, bd, m1, m2, u, r, v, ev, g, p, q;
  const v4 zero = _mm256_setzero_si256(), one = _mm256_set1_epi64x(1);
  _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) {
    X.l[i] = _mm256_blend_epi32(zero, x1->l[i], 0xcc); // [1, x1] (the 1 below)
    Z.l[i] = zero;                                     // [0, 1] (the 1 below)
  }
  X.l[0] = _mm256_blend_epi32(X.l[0], one, 0x33);
  Z.l[0] = _mm256_blend_epi32(zero, one, 0xcc);
  v4 words[4], prev = zero;
  fe4_scalar_words(words, k); // both lanes of a ladder hold its scalar: the same mask
  for (int pos = 254; pos >= 0; pos--) {
    v4 mask = swap_mask(words, pos, &prev);
    fe4_swap_pairs(&Xs, &X); fe4_cswap(&X, &Xs, mask);
    fe4_swap_pairs(&Xs, &Z); fe4_cswap(&Z, &Xs, mask);
    fe4_add(&s, &X, &Z); fe4_carry(&s);         // [A, C]
    fe4_sub(&bd, &X, &Z); fe4_carry(&bd);       // [B, D]
    fe4_swap_pairs(&t, &bd);                    // [D, B]
    fe4_mul(&m1, &s, &t);                       // [DA, CB]
    _Pragma("GCC unroll 16") for (int i = 0; i < 5; i++) t.l[i] = _mm256_unpacklo_epi64(s.l[i], bd.l[i]); // [A, B]
    fe4_sqr(&m2, &t);                           // [AA, BB]
    fe4_swap_pairs(&t, &m1);                    // [CB, DA]
    fe4_sub(&u, &m1, &t); fe4_add(&v, &m1, &t);
    fe4_odd_from(&u, &u, &v); fe4_carry(&u);    // [DA - CB, DA + CB]
    fe4_sqr(&r, &u);                            // [T, X3]
    fe4_swap_pairs(&t, &m2);                    // [BB, AA]
    fe4_mul(&v, &m2, &t);                       // [X2, .]
    fe4_sub(&ev, &m2, &t); fe4_carry(&ev);      // [E, .]
    fe4_mul121666(&g, &ev);
    fe4_add(&g, &g, &t); fe4_carry(&g);         // [G, .]
    fe4_odd_from(&p, &ev, x1);                  // [E, x1]
    fe4_swap_pairs(&t, &r);                     // [X3, T]
    fe4_odd_from(&q, &g, &t);                   // [G, T]
    fe4_mul(&Z, &p, &q);                        // [E G, x1 T]
    fe4_odd_from(&X, &v, &r);                   // [X2, X3]
  }
  v4 mask = _mm256_sub_epi64(zero, prev);
  fe4_swap_pairs(&Xs, &X); fe4_cswap(&X, &Xs, mask);
  fe4_swap_pairs(&Xs, &Z); fe4_cswap(&Z, &Xs, mask);
  *xout = X;
  *zout = Z;
  OPENSSL_cleanse(&X, sizeof X); OPENSSL_cleanse(&Z, sizeof Z); OPENSSL_cleanse(&Xs, sizeof Xs);
  OPENSSL_cleanse(&t, sizeof t); OPENSSL_cleanse(&s, sizeof s); OPENSSL_cleanse(&bd, sizeof bd);
  OPENSSL_cleanse(&m1, sizeof m1); OPENSSL_cleanse(&m2, sizeof m2); OPENSSL_cleanse(&u, sizeof u);
  OPENSSL_cleanse(&r, sizeof r); OPENSSL_cleanse(&v, sizeof v); OPENSSL_cleanse(&ev, sizeof ev);
  OPENSSL_cleanse(&g, sizeof g); OPENSSL_cleanse(&p, sizeof p); OPENSSL_cleanse(&q, sizeof q);
  OPENSSL_cleanse(words, sizeof words);
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
  // One or two ladders: a pair of lanes each (ladder2); three or four: a lane each (ladder4).
  const bool paired = n <= 2;
  uint64_t k[4][4], u[5][4], out[5][4];
  fe4 x1, x2, z2;
  memset(k, 0, sizeof k);
  memset(u, 0, sizeof u);
  for (int j = 0; j < n && j < 4; j++) {
    uint8_t e[32];
    memcpy(e, scalars[j], 32);
    e[0] &= 248; e[31] &= 127; e[31] |= 64;
    uint64_t l[5];
    limbs_from_bytes(l, points[j]);
    for (int lane = paired ? 2 * j : j; lane <= (paired ? 2 * j + 1 : j); lane++) {
      for (int w = 0; w < 4; w++) {
        k[lane][w] = 0;
        for (int b = 0; b < 8; b++) k[lane][w] |= (uint64_t)e[8 * w + b] << (8 * b);
      }
      for (int i = 0; i < 5; i++) u[i][lane] = l[i];
    }
    OPENSSL_cleanse(e, sizeof e);
  }
  for (int i = 0; i < 5; i++) memcpy(&x1.l[i], u[i], 32);
  if (paired) ladder2(&x2, &z2, &x1, (const uint64_t(*)[4])k);
  else ladder4(&x2, &z2, &x1, (const uint64_t(*)[4])k);
  for (int j = 0; j < n && j < 4; j++) {
    int lane = paired ? 2 * j : j;
    uint64_t lx[5], lz[5];
    for (int i = 0; i < 5; i++) { memcpy(out[i], &x2.l[i], 32); lx[i] = out[i][lane]; }
    limbs_to_words(x[j], lx);
    for (int i = 0; i < 5; i++) { memcpy(out[i], &z2.l[i], 32); lz[i] = out[i][lane]; }
    limbs_to_words(z[j], lz);
  }
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(&x2, sizeof x2); OPENSSL_cleanse(&z2, sizeof z2); OPENSSL_cleanse(out, sizeof out);
}

#else

bool x25519_ifma_supported(void) { return false; }
void x25519_ifma_ladders(uint64_t x[][4], uint64_t z[][4], const uint8_t *const scalars[], const uint8_t *const points[], int n) {}

#endif
