// The handshake primitives of WireGuard's Noise_IKpsk2 in one crossing each, with no allocation:
// BLAKE2s (plain and keyed, RFC 7693), the Noise KDF over HMAC-BLAKE2s (all outputs per call),
// small ChaCha20-Poly1305 seals/opens through OpenSSL EVP (contexts reused per thread) and X25519
// on raw keys (native/x25519.c). Why: through node:crypto each HMAC is an object and a digest
// (~3 us), each AEAD a cipher object (~10 us) and each DH a JWK import; a handshake makes ~20.
#include "common.h"
#include "noise-crypto.h"
#include "x25519.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

// Reads argv[first..first+n) as byte arrays (names for the TypeError); false after throwing.
static bool byte_args(napi_env env, napi_value *argv, int first, int n, uint8_t **p, size_t *len, const char *const *names) {
  for (int i = 0; i < n; i++)
    if (!arg_bytes(env, argv[first + i], &p[i], &len[i], names[i])) return false;
  return true;
}

// ---- BLAKE2s -------------------------------------------------------------------------------

typedef struct { uint32_t h[8], t; uint8_t buf[64]; size_t buflen, outlen; } b2s;

static const uint32_t B2S_IV[8] = {
  0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};
static const uint8_t SIGMA[10][16] = {
  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
  {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
  {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
  {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
  {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static inline uint32_t load32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define G(a, b, c, d, x, y)                \
  do {                                     \
    v[a] += v[b] + (x); v[d] = rotr32(v[d] ^ v[a], 16); \
    v[c] += v[d]; v[b] = rotr32(v[b] ^ v[c], 12);       \
    v[a] += v[b] + (y); v[d] = rotr32(v[d] ^ v[a], 8);  \
    v[c] += v[d]; v[b] = rotr32(v[b] ^ v[c], 7);        \
  } while (0)

#define ROUND(r)                                           \
  do {                                                     \
    G(0, 4, 8, 12, m[SIGMA[r][0]], m[SIGMA[r][1]]);        \
    G(1, 5, 9, 13, m[SIGMA[r][2]], m[SIGMA[r][3]]);        \
    G(2, 6, 10, 14, m[SIGMA[r][4]], m[SIGMA[r][5]]);       \
    G(3, 7, 11, 15, m[SIGMA[r][6]], m[SIGMA[r][7]]);       \
    G(0, 5, 10, 15, m[SIGMA[r][8]], m[SIGMA[r][9]]);       \
    G(1, 6, 11, 12, m[SIGMA[r][10]], m[SIGMA[r][11]]);     \
    G(2, 7, 8, 13, m[SIGMA[r][12]], m[SIGMA[r][13]]);      \
    G(3, 4, 9, 14, m[SIGMA[r][14]], m[SIGMA[r][15]]);      \
  } while (0)

// The ten rounds written out: with constant SIGMA indexes the message words stay in registers.
static void b2s_compress_scalar(b2s *S, const uint8_t *block, bool last) {
  uint32_t m[16], v[16];
  for (int i = 0; i < 16; i++) m[i] = load32le(block + 4 * i);
  for (int i = 0; i < 8; i++) { v[i] = S->h[i]; v[i + 8] = B2S_IV[i]; }
  v[12] ^= S->t; // messages here are far below 2^32 bytes: the high counter word stays 0
  if (last) v[14] = ~v[14];
  ROUND(0); ROUND(1); ROUND(2); ROUND(3); ROUND(4); ROUND(5); ROUND(6); ROUND(7); ROUND(8); ROUND(9);
  for (int i = 0; i < 8; i++) S->h[i] ^= v[i] ^ v[i + 8];
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) // GCC's target pragma; elsewhere the scalar one serves
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl")
// The same compression on the four rows of the state in xmm registers (the four G of a column or
// diagonal step at once), with AVX-512VL's one-instruction rotations; the message words of a
// round come from one permutation of the block, by this table (SIGMA[r] in the order the steps
// take them: x of G0-G3, y of G0-G3, x of G4-G7, y of G4-G7). Scalar x86 has 16 registers for the
// 32 words of state and message, so the plain version spills; this one ran ~10 % faster here
// (122 vs 134 ns a block). No branch or address depends on the data: constant time as the scalar.
static const uint32_t B2S_ROUND_WORDS[10][16] __attribute__((aligned(64))) = {
  {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15},
  {14, 4, 9, 13, 10, 8, 15, 6, 1, 0, 11, 5, 12, 2, 7, 3},
  {11, 12, 5, 15, 8, 0, 2, 13, 10, 3, 7, 9, 14, 6, 1, 4},
  {7, 3, 13, 11, 9, 1, 12, 14, 2, 5, 4, 15, 6, 10, 0, 8},
  {9, 5, 2, 10, 0, 7, 4, 15, 14, 11, 6, 3, 1, 12, 8, 13},
  {2, 6, 0, 8, 12, 10, 11, 3, 4, 7, 15, 1, 13, 5, 14, 9},
  {12, 1, 14, 4, 5, 15, 13, 10, 0, 6, 9, 8, 7, 3, 2, 11},
  {13, 7, 12, 3, 11, 14, 1, 9, 5, 15, 8, 2, 0, 4, 6, 10},
  {6, 14, 11, 0, 15, 9, 3, 8, 12, 13, 1, 10, 2, 7, 4, 5},
  {10, 8, 7, 1, 2, 4, 6, 5, 15, 9, 3, 13, 11, 14, 12, 0},
};

#define B2S_HALF_G(a, b, c, d, m, r1, r2) \
  do { \
    a = _mm_add_epi32(_mm_add_epi32(a, b), m); d = _mm_ror_epi32(_mm_xor_si128(d, a), r1); \
    c = _mm_add_epi32(c, d); b = _mm_ror_epi32(_mm_xor_si128(b, c), r2); \
  } while (0)

static void b2s_compress_vl(b2s *S, const uint8_t *block, bool last) {
  const __m512i m = _mm512_loadu_si512((const void *)block); // x86 is little-endian, as BLAKE2s
  __m128i a = _mm_loadu_si128((const __m128i *)S->h), b = _mm_loadu_si128((const __m128i *)(S->h + 4));
  __m128i c = _mm_loadu_si128((const __m128i *)B2S_IV);
  __m128i d = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(B2S_IV + 4)), _mm_set_epi32(0, last ? -1 : 0, 0, (int)S->t));
  const __m128i a0 = a, b0 = b;
#pragma GCC unroll 10
  for (int r = 0; r < 10; r++) {
    const __m512i w = _mm512_permutexvar_epi32(_mm512_load_si512((const void *)B2S_ROUND_WORDS[r]), m);
    B2S_HALF_G(a, b, c, d, _mm512_castsi512_si128(w), 16, 12);
    B2S_HALF_G(a, b, c, d, _mm512_extracti32x4_epi32(w, 1), 8, 7);
    // Diagonals into columns: row i turned left by i.
    b = _mm_shuffle_epi32(b, _MM_SHUFFLE(0, 3, 2, 1)); c = _mm_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2)); d = _mm_shuffle_epi32(d, _MM_SHUFFLE(2, 1, 0, 3));
    B2S_HALF_G(a, b, c, d, _mm512_extracti32x4_epi32(w, 2), 16, 12);
    B2S_HALF_G(a, b, c, d, _mm512_extracti32x4_epi32(w, 3), 8, 7);
    b = _mm_shuffle_epi32(b, _MM_SHUFFLE(2, 1, 0, 3)); c = _mm_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2)); d = _mm_shuffle_epi32(d, _MM_SHUFFLE(0, 3, 2, 1));
  }
  _mm_storeu_si128((__m128i *)S->h, _mm_xor_si128(a0, _mm_xor_si128(a, c)));
  _mm_storeu_si128((__m128i *)(S->h + 4), _mm_xor_si128(b0, _mm_xor_si128(b, d)));
}

// Two compressions at once, one in each 128-bit half of ymm rows: x absorbs block bx, y block by
// (neither the last). The rounds are latency-bound, so two cost about what one does; HMAC's key
// setup (the inner and the outer pad, twice a KDF) takes them.
static void b2s_compress2_vl(b2s *x, const uint8_t *bx, b2s *y, const uint8_t *by) {
  const __m512i mx = _mm512_loadu_si512((const void *)bx), my = _mm512_loadu_si512((const void *)by);
  const __m256i both = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)y->h), _mm_loadu_si128((const __m128i *)x->h));
  const __m256i both4 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(y->h + 4)), _mm_loadu_si128((const __m128i *)(x->h + 4)));
  __m256i a = both, b = both4;
  __m256i c = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)B2S_IV));
  __m256i d = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(B2S_IV + 4))),
                               _mm256_set_epi32(0, 0, 0, (int)y->t, 0, 0, 0, (int)x->t));
  // Word i of x's block is index i of the pair (mx, my), of y's block index 16 + i.
#pragma GCC unroll 10
  for (int r = 0; r < 10; r++) {
    const __m512i idx = _mm512_load_si512((const void *)B2S_ROUND_WORDS[r]);
    const __m512i wx = _mm512_permutexvar_epi32(idx, mx), wy = _mm512_permutexvar_epi32(idx, my);
    // Step k's words: x's four in the low half, y's four in the high half.
#define B2S_PAIR(k) _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_extracti32x4_epi32(wx, k)), _mm512_extracti32x4_epi32(wy, k), 1)
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), B2S_PAIR(0)); d = _mm256_ror_epi32(_mm256_xor_si256(d, a), 16);
    c = _mm256_add_epi32(c, d); b = _mm256_ror_epi32(_mm256_xor_si256(b, c), 12);
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), B2S_PAIR(1)); d = _mm256_ror_epi32(_mm256_xor_si256(d, a), 8);
    c = _mm256_add_epi32(c, d); b = _mm256_ror_epi32(_mm256_xor_si256(b, c), 7);
    b = _mm256_shuffle_epi32(b, _MM_SHUFFLE(0, 3, 2, 1)); c = _mm256_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2)); d = _mm256_shuffle_epi32(d, _MM_SHUFFLE(2, 1, 0, 3));
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), B2S_PAIR(2)); d = _mm256_ror_epi32(_mm256_xor_si256(d, a), 16);
    c = _mm256_add_epi32(c, d); b = _mm256_ror_epi32(_mm256_xor_si256(b, c), 12);
    a = _mm256_add_epi32(_mm256_add_epi32(a, b), B2S_PAIR(3)); d = _mm256_ror_epi32(_mm256_xor_si256(d, a), 8);
    c = _mm256_add_epi32(c, d); b = _mm256_ror_epi32(_mm256_xor_si256(b, c), 7);
    b = _mm256_shuffle_epi32(b, _MM_SHUFFLE(2, 1, 0, 3)); c = _mm256_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2)); d = _mm256_shuffle_epi32(d, _MM_SHUFFLE(0, 3, 2, 1));
#undef B2S_PAIR
  }
  const __m256i lo = _mm256_xor_si256(both, _mm256_xor_si256(a, c)), hi = _mm256_xor_si256(both4, _mm256_xor_si256(b, d));
  _mm_storeu_si128((__m128i *)x->h, _mm256_castsi256_si128(lo));
  _mm_storeu_si128((__m128i *)y->h, _mm256_extracti128_si256(lo, 1));
  _mm_storeu_si128((__m128i *)(x->h + 4), _mm256_castsi256_si128(hi));
  _mm_storeu_si128((__m128i *)(y->h + 4), _mm256_extracti128_si256(hi, 1));
}
#pragma GCC pop_options

static bool b2s_vl_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}
#else
static void b2s_compress_vl(b2s *S, const uint8_t *block, bool last) { b2s_compress_scalar(S, block, last); }
static void b2s_compress2_vl(b2s *x, const uint8_t *bx, b2s *y, const uint8_t *by) {
  b2s_compress_scalar(x, bx, false);
  b2s_compress_scalar(y, by, false);
}
static bool b2s_vl_supported(void) { return false; }
#endif

static bool b2s_vl; // set once (b2s_resolve) when the vector compression passed its check

// The vector compressions serve when the CPU has them and they agree with the scalar one on
// chained pseudo-random states, blocks, counters and both final flags, alone and in pairs (a wrong
// build must never serve).
static void b2s_resolve(void) {
  if (!b2s_vl_supported()) return;
  b2s s1 = {0}, v1 = {0}, s2 = {0}, v2 = {0};
  uint8_t b1[64], b2[64];
  uint32_t r = 0x9e3779b9u;
  for (int i = 0; i < 8; i++) { s1.h[i] = v1.h[i] = B2S_IV[i] ^ (uint32_t)i; s2.h[i] = v2.h[i] = B2S_IV[i] + (uint32_t)i; }
  for (int it = 0; it < 64; it++) {
    for (int i = 0; i < 64; i++) { r = r * 1664525u + 1013904223u; b1[i] = (uint8_t)(r >> 24); b2[i] = (uint8_t)(r >> 16); }
    s1.t = v1.t = r;
    s2.t = v2.t = r ^ 0x5555u;
    b2s_compress_scalar(&s1, b1, it & 1);
    b2s_compress_vl(&v1, b1, it & 1);
    b2s_compress_scalar(&s1, b2, false);
    b2s_compress_scalar(&s2, b1, false);
    b2s_compress2_vl(&v1, b2, &v2, b1);
    if (memcmp(s1.h, v1.h, sizeof s1.h) != 0 || memcmp(s2.h, v2.h, sizeof s2.h) != 0) return;
  }
  b2s_vl = true;
}

static inline void b2s_compress(b2s *S, const uint8_t *block, bool last) {
  if (b2s_vl) b2s_compress_vl(S, block, last);
  else b2s_compress_scalar(S, block, last);
}

static void b2s_update(b2s *S, const uint8_t *in, size_t n) {
  while (n > 0) {
    if (S->buflen == 64) { // a full block is compressed only once more input proves it is not the last
      S->t += 64;
      b2s_compress(S, S->buf, false);
      S->buflen = 0;
    }
    size_t take = 64 - S->buflen;
    if (take > n) take = n;
    memcpy(S->buf + S->buflen, in, take);
    S->buflen += take; in += take; n -= take;
  }
}

static void b2s_init(b2s *S, size_t outlen, const uint8_t *key, size_t keylen) {
  memcpy(S->h, B2S_IV, sizeof S->h);
  S->h[0] ^= 0x01010000u ^ (uint32_t)(keylen << 8) ^ (uint32_t)outlen;
  S->t = 0; S->buflen = 0; S->outlen = outlen;
  if (keylen) {
    uint8_t block[64] = {0};
    memcpy(block, key, keylen);
    b2s_update(S, block, 64);
    OPENSSL_cleanse(block, sizeof block);
  }
}

static void b2s_final(b2s *S, uint8_t *out) {
  S->t += (uint32_t)S->buflen;
  memset(S->buf + S->buflen, 0, 64 - S->buflen);
  b2s_compress(S, S->buf, true);
  uint8_t full[32];
  for (int i = 0; i < 8; i++) {
    full[4 * i] = (uint8_t)S->h[i]; full[4 * i + 1] = (uint8_t)(S->h[i] >> 8);
    full[4 * i + 2] = (uint8_t)(S->h[i] >> 16); full[4 * i + 3] = (uint8_t)(S->h[i] >> 24);
  }
  memcpy(out, full, S->outlen);
  OPENSSL_cleanse(full, sizeof full);
  OPENSSL_cleanse(S, sizeof *S);
}

// HMAC-BLAKE2s-256 (RFC 2104, 64-byte block) with the key's two pad blocks already absorbed, so
// that the KDF's outputs under one key cost two compressions less each.
typedef struct { b2s inner, outer; uint8_t ipad[64]; } hmac_b2s_key;

static void hmac_b2s_init(hmac_b2s_key *k, const uint8_t *key, size_t keylen) {
  uint8_t pad[64];
  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < keylen; i++) pad[i] ^= key[i];
  b2s_init(&k->inner, 32, NULL, 0);
  memcpy(k->ipad, pad, 64);
  for (size_t i = 0; i < 64; i++) pad[i] ^= 0x36 ^ 0x5c;
  b2s_init(&k->outer, 32, NULL, 0);
  k->inner.t = k->outer.t = 64;
  if (b2s_vl) { // both pads in one pass (the two halves of ymm rows)
    b2s_compress2_vl(&k->inner, k->ipad, &k->outer, pad);
  } else {
    b2s_compress_scalar(&k->inner, k->ipad, false);
    b2s_compress_scalar(&k->outer, pad, false);
  }
  OPENSSL_cleanse(pad, sizeof pad);
}

// out = HMAC(key, a || b); out may alias a or b (they are read first).
static void hmac_b2s(uint8_t out[32], const hmac_b2s_key *k, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  uint8_t inner[32];
  b2s S;
  if (alen + blen == 0) { // the pad block is then the last block: it cannot come pre-absorbed
    b2s_init(&S, 32, NULL, 0);
    b2s_update(&S, k->ipad, 64);
  } else {
    S = k->inner;
    b2s_update(&S, a, alen);
    if (blen) b2s_update(&S, b, blen);
  }
  b2s_final(&S, inner);
  S = k->outer;
  b2s_update(&S, inner, 32);
  b2s_final(&S, out);
  OPENSSL_cleanse(inner, sizeof inner);
}

// noiseBlake2s(out, key, a, b, c): BLAKE2s of a || b || c with out.length (1..32) bytes of output,
// keyed when key is not empty (at most 32 bytes). Returns 0.
static napi_value noise_blake2s(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  static const char *const names[] = {"out", "key", "a", "b", "c"};
  uint8_t *p[5]; size_t n[5];
  NEED(byte_args(env, argv, 0, 5, p, n, names));
  if (n[0] < 1 || n[0] > 32 || n[1] > 32) return throw_range(env, "noiseBlake2s: out must be 1..32 bytes, key at most 32");
  noise_blake2s_raw(p[0], n[0], p[1], n[1], p[2], n[2], p[3], n[3], p[4], n[4]);
  return ret_int(env, 0);
}

// Noise's HKDF over HMAC-BLAKE2s: outlen / 32 (1..3) outputs back to back into out, which may
// alias the chaining key (it is absorbed first).
void noise_hkdf(uint8_t *out, size_t outlen, const uint8_t ck[32], const uint8_t *in, size_t inlen) {
  uint8_t prk[32], t[32], one = 1;
  hmac_b2s_key k;
  hmac_b2s_init(&k, ck, 32);
  hmac_b2s(prk, &k, in, inlen, NULL, 0);
  hmac_b2s_init(&k, prk, 32);
  hmac_b2s(t, &k, &one, 1, NULL, 0);
  memcpy(out, t, 32);
  for (size_t i = 1; i < outlen / 32; i++) {
    uint8_t ctr = (uint8_t)(i + 1);
    hmac_b2s(t, &k, out + 32 * (i - 1), 32, &ctr, 1);
    memcpy(out + 32 * i, t, 32);
  }
  OPENSSL_cleanse(&k, sizeof k);
  OPENSSL_cleanse(prk, sizeof prk);
  OPENSSL_cleanse(t, sizeof t);
}

// out = BLAKE2s(a || b || c) with outlen (1..32) bytes, keyed when keylen > 0 (at most 32).
void noise_blake2s_raw(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const uint8_t *c, size_t clen) {
  b2s S;
  b2s_init(&S, outlen, key, keylen);
  b2s_update(&S, a, alen);
  b2s_update(&S, b, blen);
  b2s_update(&S, c, clen);
  b2s_final(&S, out);
}

// noiseKdf(out, chainingKey, input): Noise's HKDF over HMAC-BLAKE2s; out.length / 32 (1..3)
// outputs written back to back. Returns 0.
static napi_value noise_kdf(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  static const char *const names[] = {"out", "chainingKey", "input"};
  uint8_t *p[3]; size_t n[3];
  NEED(byte_args(env, argv, 0, 3, p, n, names));
  if ((n[0] != 32 && n[0] != 64 && n[0] != 96) || n[1] != 32) return throw_range(env, "noiseKdf: out must be 32, 64 or 96 bytes and the chaining key 32");
  noise_hkdf(p[0], n[0], p[1], p[2], n[2]);
  return ret_int(env, 0);
}

// ---- ChaCha20-Poly1305 for small messages ----------------------------------------------------

static __thread EVP_CIPHER_CTX *seal_ctx, *open_ctx;

static EVP_CIPHER_CTX *chacha_ctx(EVP_CIPHER_CTX **slot, int enc) {
  if (!*slot) {
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x || EVP_CipherInit_ex(x, EVP_chacha20_poly1305(), NULL, NULL, NULL, enc) != 1) {
      EVP_CIPHER_CTX_free(x);
      return NULL;
    }
    *slot = x;
  }
  return *slot;
}

bool chacha_poly(int enc, uint8_t *out, size_t outlen, const uint8_t *key, const uint8_t *nonce,
                        const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen) {
  size_t body = enc ? inlen : inlen - 16;
  EVP_CIPHER_CTX *x = enc ? chacha_ctx(&seal_ctx, 1) : chacha_ctx(&open_ctx, 0);
  int l = 0;
  bool ok = x && EVP_CipherInit_ex(x, NULL, NULL, key, nonce, enc) == 1 &&
            (aadlen == 0 || EVP_CipherUpdate(x, NULL, &l, aad, (int)aadlen) == 1) &&
            (body == 0 || EVP_CipherUpdate(x, out, &l, in, (int)body) == 1);
  if (ok && enc) {
    ok = EVP_CipherFinal_ex(x, out + body, &l) == 1 &&
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + body) == 1;
  } else if (ok) {
    uint8_t tag[16];
    memcpy(tag, in + body, 16); // the tag may share memory with out
    ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 && EVP_CipherFinal_ex(x, out + body, &l) == 1;
  }
  if (!ok && !enc) OPENSSL_cleanse(out, outlen);
  return ok;
}

// HChaCha20 (draft-irtf-cfrg-xchacha §2.2): the subkey of XChaCha20 from a key and 16 nonce bytes.
#define QR(a, b, c, d) \
  do { a += b; d = rotr32(d ^ a, 16); c += d; b = rotr32(b ^ c, 20); a += b; d = rotr32(d ^ a, 24); c += d; b = rotr32(b ^ c, 25); } while (0)
static void hchacha20(uint8_t out[32], const uint8_t key[32], const uint8_t nonce16[16]) {
  uint32_t x[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
  for (int i = 0; i < 8; i++) x[4 + i] = load32le(key + 4 * i);
  for (int i = 0; i < 4; i++) x[12 + i] = load32le(nonce16 + 4 * i);
  for (int r = 0; r < 10; r++) {
    QR(x[0], x[4], x[8], x[12]); QR(x[1], x[5], x[9], x[13]); QR(x[2], x[6], x[10], x[14]); QR(x[3], x[7], x[11], x[15]);
    QR(x[0], x[5], x[10], x[15]); QR(x[1], x[6], x[11], x[12]); QR(x[2], x[7], x[8], x[13]); QR(x[3], x[4], x[9], x[14]);
  }
  static const int pick[8] = {0, 1, 2, 3, 12, 13, 14, 15};
  for (int i = 0; i < 8; i++) {
    uint32_t v = x[pick[i]];
    out[4 * i] = (uint8_t)v; out[4 * i + 1] = (uint8_t)(v >> 8); out[4 * i + 2] = (uint8_t)(v >> 16); out[4 * i + 3] = (uint8_t)(v >> 24);
  }
  OPENSSL_cleanse(x, sizeof x);
}

// noiseAead(encrypt, out, key, nonce, aad, input): ChaCha20-Poly1305 with a 12-byte nonce, or
// XChaCha20-Poly1305 with a 24-byte one (cookie replies). Seal: out is input.length + 16
// (ciphertext || tag). Open: out is input.length - 16. Returns 1, or 0 when the tag does not
// verify (out is then zeroed).
static napi_value noise_aead(napi_env env, napi_callback_info info) {
  GET_ARGS(6);
  static const char *const names[] = {"out", "key", "nonce", "aad", "input"};
  int32_t enc; uint8_t *p[5]; size_t n[5];
  NEED(arg_int(env, argv[0], &enc, "encrypt"));
  NEED(byte_args(env, argv, 1, 5, p, n, names));
  uint8_t *out = p[0], *key = p[1], *nonce = p[2], *aad = p[3], *in = p[4];
  size_t outlen = n[0], keylen = n[1], noncelen = n[2], aadlen = n[3], inlen = n[4];
  if (keylen != 32 || (noncelen != 12 && noncelen != 24) || (!enc && inlen < 16) || outlen != (enc ? inlen + 16 : inlen - 16) || inlen > (1 << 20))
    return throw_range(env, "noiseAead: key 32, nonce 12 or 24 bytes, out sized for input +/- 16");
  if (noncelen == 12) return ret_int(env, chacha_poly(enc, out, outlen, key, nonce, aad, aadlen, in, inlen) ? 1 : 0);
  uint8_t subkey[32], nonce12[12] = {0};
  hchacha20(subkey, key, nonce);
  memcpy(nonce12 + 4, nonce + 16, 8);
  bool ok = chacha_poly(enc, out, outlen, subkey, nonce12, aad, aadlen, in, inlen);
  OPENSSL_cleanse(subkey, sizeof subkey);
  return ret_int(env, ok ? 1 : 0);
}

// ---- X25519 (native/x25519.c) ------------------------------------------------------------

// noiseX25519(out, privateKey, publicKey): the shared secret. Returns 1, or 0 when the result is
// all zeros (a low-order point, which WireGuard refuses) or the key is unusable.
static napi_value noise_x25519(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  static const char *const names[] = {"out", "privateKey", "publicKey"};
  uint8_t *p[3]; size_t n[3];
  NEED(byte_args(env, argv, 0, 3, p, n, names));
  uint8_t *out = p[0], *sk = p[1], *pk = p[2];
  if (n[0] != 32 || n[1] != 32 || n[2] != 32) return throw_range(env, "noiseX25519: keys and out must be 32 bytes");
  return ret_int(env, x25519_shared(out, sk, pk) ? 1 : 0);
}

// noiseX25519Public(out, privateKey): the public key of a private key. Returns 1 (0 on failure).
static napi_value noise_x25519_public(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  static const char *const names[] = {"out", "privateKey"};
  uint8_t *p[2]; size_t n[2];
  NEED(byte_args(env, argv, 0, 2, p, n, names));
  if (n[0] != 32 || n[1] != 32) return throw_range(env, "noiseX25519Public: key and out must be 32 bytes");
  return ret_int(env, x25519_public(p[0], p[1]) ? 1 : 0);
}

// noiseX25519Generate(privateKey, publicKey): a fresh clamped private key (OpenSSL's RNG) and its
// public key, written into the two 32-byte arrays. Returns 1 (0 on failure).
static napi_value noise_x25519_generate(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  static const char *const names[] = {"privateKey", "publicKey"};
  uint8_t *p[2]; size_t n[2];
  NEED(byte_args(env, argv, 0, 2, p, n, names));
  uint8_t *sk = p[0], *pk = p[1];
  if (n[0] != 32 || n[1] != 32) return throw_range(env, "noiseX25519Generate: keys must be 32 bytes");
  if (RAND_bytes(sk, 32) != 1) return ret_int(env, 0);
  sk[0] &= 248; sk[31] &= 127; sk[31] |= 64;
  return ret_int(env, x25519_public(pk, sk) ? 1 : 0);
}

// noiseX25519Many(out, privateKeys, publicKeys): n = out.length / 32 (1 to 4) shared secrets in
// one batch, as a handshake message computes them (x25519_many), out[32 i..] = X25519(private
// key i, public key i). Returns 1, or 0 when a result is all zeros.
static napi_value noise_x25519_many(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  static const char *const names[] = {"out", "privateKeys", "publicKeys"};
  uint8_t *p[3]; size_t n[3];
  NEED(byte_args(env, argv, 0, 3, p, n, names));
  size_t count = n[0] / 32;
  if (n[0] % 32 != 0 || count < 1 || count > X25519_MANY_MAX || n[1] != n[0] || n[2] != n[0])
    return throw_range(env, "noiseX25519Many: out, privateKeys and publicKeys must be the same 32 to 128 bytes (1 to 4 keys)");
  uint8_t *outs[X25519_MANY_MAX];
  const uint8_t *privs[X25519_MANY_MAX], *pubs[X25519_MANY_MAX];
  bool oks[X25519_MANY_MAX];
  for (size_t i = 0; i < count; i++) { outs[i] = p[0] + 32 * i; privs[i] = p[1] + 32 * i; pubs[i] = p[2] + 32 * i; }
  return ret_int(env, x25519_many(outs, privs, pubs, (int)count, oks) ? 1 : 0);
}

// noiseX25519IfmaBatches() -> how many batches (noiseX25519Many calls, handshake messages, single
// shared secrets) so far ran on the AVX-512 IFMA ladders.
static napi_value noise_x25519_ifma_batches(napi_env env, napi_callback_info info) {
  return ret_int(env, (int32_t)x25519_ifma_batch_count());
}

// noiseX25519Backend() -> bits: 1 when node's raw scalar multiplication serves shared secrets (0:
// the EVP path), 2 when public keys come from the fixed-base comb on node's fe64 routines, 4 when
// the handshake steps batch their results on the ladder of native/x25519.c (x25519_many), 8 when
// shared secrets (alone or a message's several) run on AVX-512 IFMA vector ladders (native/x25519-ifma.c).
static napi_value noise_x25519_backend(napi_env env, napi_callback_info info) {
  return ret_int(env, x25519_backend());
}


void noise_handshake_register(napi_env env, napi_value exports); // noise-handshake.c

// noiseBlake2sBackend() -> 1 when BLAKE2s compresses on AVX-512VL rows (it passed its check), 0 scalar.
static napi_value noise_blake2s_backend(napi_env env, napi_callback_info info) {
  return ret_int(env, b2s_vl ? 1 : 0);
}

void noise_crypto_register(napi_env env, napi_value exports) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, b2s_resolve); // before the handshake's constants are hashed
  napi_property_descriptor d[] = {
    EXPORT("noiseBlake2sBackend", noise_blake2s_backend),
    EXPORT("noiseBlake2s", noise_blake2s),
    EXPORT("noiseKdf", noise_kdf),
    EXPORT("noiseAead", noise_aead),
    EXPORT("noiseX25519", noise_x25519),
    EXPORT("noiseX25519Public", noise_x25519_public),
    EXPORT("noiseX25519Generate", noise_x25519_generate),
    EXPORT("noiseX25519Backend", noise_x25519_backend),
    EXPORT("noiseX25519Many", noise_x25519_many),
    EXPORT("noiseX25519IfmaBatches", noise_x25519_ifma_batches),
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  noise_handshake_register(env, exports);
}
