// X25519 (RFC 7748) on raw 32-byte keys, as fast as this process allows, with no allocation.
//
// Shared secrets: node's own OpenSSL scalar multiplication (ossl_x25519, exported by the node
// binary; on x86-64 with ADX/BMI2 its Montgomery ladder runs on the mulx/adx field routines
// x25519_fe64_*). EVP would need a key object per call, and importing a raw private key
// recomputes its public key (a second scalar multiplication).
//
// Public keys (every ephemeral of a handshake needs one): OpenSSL derives them on its Edwards
// code with the portable 32-bit field arithmetic (ref10), ~0.75x the cost of a whole ladder here.
// Where node exports the fe64 routines, the fixed-base multiplication below runs on them instead:
// ref10's method (64 signed radix-16 digits, a table of 8 multiples of 256^i * B for each i, 64
// mixed additions and 4 doublings, all constant-time), then u = (Z + Y) / (Z - Y). The table is
// built once per process from the base point.
//
// Every fast path is checked against RFC 7748's test vectors (and the fixed base against OpenSSL's
// own derivation) once; without the symbols (a node linking a shared libcrypto) or on a mismatch,
// the EVP path or OpenSSL's derivation serves.
#include "x25519.h"
#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef int (*x25519_fn)(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
typedef void (*x25519_base_fn)(uint8_t out[32], const uint8_t priv[32]);
static x25519_fn raw_x25519;
static x25519_base_fn raw_x25519_base;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

// ---- Field arithmetic mod 2^255 - 19 on OpenSSL's fe64 routines ------------------------------
// Four 64-bit limbs; inputs and outputs may be partially reduced (anywhere in [0, 2^256)), as the
// routines' contract says; fe_tobytes does the full reduction.

typedef uint64_t fe[4];
typedef void (*fe_mul_fn)(fe h, const fe f, const fe g);
typedef void (*fe_sqr_fn)(fe h, const fe f);
static struct {
  fe_mul_fn mul, add, sub;
  fe_sqr_fn sqr;
} F;
static bool fixed_base_ready;

static void fe_copy(fe h, const fe f) { memcpy(h, f, sizeof(fe)); }
static void fe_one(fe h) { h[0] = 1; h[1] = h[2] = h[3] = 0; }
static void fe_zero(fe h) { h[0] = h[1] = h[2] = h[3] = 0; }

// h = f if b == 1, unchanged if b == 0, without a branch on b.
static void fe_cmov(fe h, const fe f, uint64_t b) {
  uint64_t mask = (uint64_t)0 - b;
  for (int i = 0; i < 4; i++) h[i] ^= mask & (h[i] ^ f[i]);
}

static void fe_sqr_n(fe h, const fe f, int n) {
  F.sqr(h, f);
  for (int i = 1; i < n; i++) F.sqr(h, h);
}

// h = 1/z = z^(p-2) (Fermat), the usual chain of 254 squarings and 11 multiplications.
static void fe_invert(fe out, const fe z) {
  fe t0, t1, t2, t3;
  F.sqr(t0, z);
  fe_sqr_n(t1, t0, 2);
  F.mul(t1, z, t1);
  F.mul(t0, t0, t1);
  F.sqr(t2, t0);
  F.mul(t1, t1, t2);
  fe_sqr_n(t2, t1, 5);
  F.mul(t1, t2, t1);
  fe_sqr_n(t2, t1, 10);
  F.mul(t2, t2, t1);
  fe_sqr_n(t3, t2, 20);
  F.mul(t2, t3, t2);
  fe_sqr_n(t2, t2, 10);
  F.mul(t1, t2, t1);
  fe_sqr_n(t2, t1, 50);
  F.mul(t2, t2, t1);
  fe_sqr_n(t3, t2, 100);
  F.mul(t2, t3, t2);
  fe_sqr_n(t2, t2, 50);
  F.mul(t1, t2, t1);
  fe_sqr_n(t1, t1, 5);
  F.mul(out, t1, t0);
}

// Folds bit 255 back in (2^255 = 19 mod p): the result is below 2^255 + 2^64.
static void fe_fold(uint64_t h[4]) {
  uint64_t top = h[3] >> 63;
  h[3] &= 0x7fffffffffffffffULL;
  unsigned __int128 c = (unsigned __int128)h[0] + 19 * top;
  h[0] = (uint64_t)c;
  for (int i = 1; i < 4; i++) { c = (unsigned __int128)h[i] + (uint64_t)(c >> 64); h[i] = (uint64_t)c; }
}

// The canonical little-endian encoding (fully reduced mod p), constant-time.
static void fe_tobytes(uint8_t s[32], const fe f) {
  uint64_t h[4], g[4];
  fe_copy(h, f);
  fe_fold(h);
  fe_fold(h); // h < 2^255 now
  // h >= p exactly when h + 19 reaches 2^255; then h - p = (h + 19) - 2^255.
  unsigned __int128 c = (unsigned __int128)h[0] + 19;
  g[0] = (uint64_t)c;
  for (int i = 1; i < 4; i++) { c = (unsigned __int128)h[i] + (uint64_t)(c >> 64); g[i] = (uint64_t)c; }
  uint64_t ge_p = g[3] >> 63;
  g[3] &= 0x7fffffffffffffffULL;
  fe_cmov(h, g, ge_p);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 8; j++) s[8 * i + j] = (uint8_t)(h[i] >> (8 * j));
}

// ---- Edwards points (-x^2 + y^2 = 1 + d x^2 y^2), ref10's representations --------------------

typedef struct { fe X, Y, Z; } ge_p2;           // x = X/Z, y = Y/Z
typedef struct { fe X, Y, Z, T; } ge_p3;        // ... and XY = ZT
typedef struct { fe X, Y, Z, T; } ge_p1p1;      // x = X/Z, y = Y/T (a sum or double, not yet mapped)
typedef struct { fe yplusx, yminusx, xy2d; } ge_precomp; // affine, ready for a mixed addition

static const fe D2 = {0xebd69b9426b2f159ULL, 0x00e0149a8283b156ULL, 0x198e80f2eef3d130ULL, 0x2406d9dc56dffce7ULL};
static const fe BASE_X = {0xc9562d608f25d51aULL, 0x692cc7609525a7b2ULL, 0xc0a4e231fdd6dc5cULL, 0x216936d3cd6e53feULL};
static const fe BASE_Y = {0x6666666666666658ULL, 0x6666666666666666ULL, 0x6666666666666666ULL, 0x6666666666666666ULL};

/** BASE[i][j] = (j + 1) * 256^i * B, for i < 32 and j < 8. */
static ge_precomp BASE[32][8];

static void p1p1_to_p2(ge_p2 *r, const ge_p1p1 *p) {
  F.mul(r->X, p->X, p->T);
  F.mul(r->Y, p->Y, p->Z);
  F.mul(r->Z, p->Z, p->T);
}

static void p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p) {
  F.mul(r->X, p->X, p->T);
  F.mul(r->Y, p->Y, p->Z);
  F.mul(r->Z, p->Z, p->T);
  F.mul(r->T, p->X, p->Y);
}

static void p2_dbl(ge_p1p1 *r, const ge_p2 *p) {
  fe t0;
  F.sqr(r->X, p->X);
  F.sqr(r->Z, p->Y);
  F.sqr(r->T, p->Z);
  F.add(r->T, r->T, r->T);
  F.add(r->Y, p->X, p->Y);
  F.sqr(t0, r->Y);
  F.add(r->Y, r->Z, r->X);
  F.sub(r->Z, r->Z, r->X);
  F.sub(r->X, t0, r->Y);
  F.sub(r->T, r->T, r->Z);
}

static void p3_dbl(ge_p1p1 *r, const ge_p3 *p) {
  ge_p2 q;
  fe_copy(q.X, p->X); fe_copy(q.Y, p->Y); fe_copy(q.Z, p->Z);
  p2_dbl(r, &q);
}

// r = p + q (q affine).
static void madd(ge_p1p1 *r, const ge_p3 *p, const ge_precomp *q) {
  fe t0;
  F.add(r->X, p->Y, p->X);
  F.sub(r->Y, p->Y, p->X);
  F.mul(r->Z, r->X, q->yplusx);
  F.mul(r->Y, r->Y, q->yminusx);
  F.mul(r->T, q->xy2d, p->T);
  F.add(t0, p->Z, p->Z);
  F.sub(r->X, r->Z, r->Y);
  F.add(r->Y, r->Z, r->Y);
  F.add(r->Z, t0, r->T);
  F.sub(r->T, t0, r->T);
}

static void p3_to_precomp(ge_precomp *r, const ge_p3 *p) {
  fe zi, x, y;
  fe_invert(zi, p->Z);
  F.mul(x, p->X, zi);
  F.mul(y, p->Y, zi);
  F.add(r->yplusx, y, x);
  F.sub(r->yminusx, y, x);
  F.mul(r->xy2d, x, y);
  F.mul(r->xy2d, r->xy2d, D2);
}

static void build_table(void) { // public data only: no constant-time concerns
  ge_p3 p, q;
  ge_p1p1 t;
  fe_copy(p.X, BASE_X); fe_copy(p.Y, BASE_Y); fe_one(p.Z); F.mul(p.T, BASE_X, BASE_Y);
  for (int i = 0; i < 32; i++) {
    p3_to_precomp(&BASE[i][0], &p);
    q = p;
    for (int j = 1; j < 8; j++) {
      madd(&t, &q, &BASE[i][0]);
      p1p1_to_p3(&q, &t);
      p3_to_precomp(&BASE[i][j], &q);
    }
    for (int k = 0; k < 8; k++) { // p = 256 p
      p3_dbl(&t, &p);
      p1p1_to_p3(&p, &t);
    }
  }
}

static uint64_t equal(int8_t a, int8_t b) { // 1 when a == b, without a branch
  uint8_t x = (uint8_t)(a ^ b);
  uint32_t y = x;
  y -= 1;
  return y >> 31;
}

// t = b * BASE[pos] (b in [-8, 8]), read through every entry so the access pattern hides b.
static void select_precomp(ge_precomp *t, int pos, int8_t b) {
  uint64_t negative = (uint64_t)((uint8_t)b >> 7);
  int8_t babs = (int8_t)(b - (int8_t)(((uint8_t)(-negative) & (uint8_t)b) << 1));
  fe_one(t->yplusx); fe_one(t->yminusx); fe_zero(t->xy2d);
  for (int j = 0; j < 8; j++) {
    uint64_t hit = equal(babs, (int8_t)(j + 1));
    fe_cmov(t->yplusx, BASE[pos][j].yplusx, hit);
    fe_cmov(t->yminusx, BASE[pos][j].yminusx, hit);
    fe_cmov(t->xy2d, BASE[pos][j].xy2d, hit);
  }
  // -P: x -> -x swaps y+x with y-x and negates 2dxy.
  fe negated_xy2d, zero = {0};
  fe swap_a, swap_b;
  fe_copy(swap_a, t->yminusx); fe_copy(swap_b, t->yplusx);
  F.sub(negated_xy2d, zero, t->xy2d);
  fe_cmov(t->yplusx, swap_a, negative);
  fe_cmov(t->yminusx, swap_b, negative);
  fe_cmov(t->xy2d, negated_xy2d, negative);
}

// out = the X25519 public key of priv: the u coordinate of clamp(priv) * B.
static void fixed_base(uint8_t out[32], const uint8_t priv[32]) {
  uint8_t a[32];
  int8_t e[64], carry = 0;
  memcpy(a, priv, 32);
  a[0] &= 248; a[31] &= 127; a[31] |= 64;
  for (int i = 0; i < 32; i++) { e[2 * i] = (int8_t)(a[i] & 15); e[2 * i + 1] = (int8_t)(a[i] >> 4); }
  for (int i = 0; i < 63; i++) { // digits in [-8, 8): each carries into the next
    e[i] = (int8_t)(e[i] + carry);
    carry = (int8_t)((e[i] + 8) >> 4);
    e[i] = (int8_t)(e[i] - (carry << 4));
  }
  e[63] = (int8_t)(e[63] + carry);
  ge_p3 h;
  ge_p1p1 r;
  ge_p2 s;
  ge_precomp t;
  fe_zero(h.X); fe_one(h.Y); fe_one(h.Z); fe_zero(h.T);
  for (int i = 1; i < 64; i += 2) {
    select_precomp(&t, i / 2, e[i]);
    madd(&r, &h, &t);
    p1p1_to_p3(&h, &r);
  }
  p3_dbl(&r, &h); p1p1_to_p2(&s, &r);
  p2_dbl(&r, &s); p1p1_to_p2(&s, &r);
  p2_dbl(&r, &s); p1p1_to_p2(&s, &r);
  p2_dbl(&r, &s); p1p1_to_p3(&h, &r);
  for (int i = 0; i < 64; i += 2) {
    select_precomp(&t, i / 2, e[i]);
    madd(&r, &h, &t);
    p1p1_to_p3(&h, &r);
  }
  // Birational map to Montgomery: u = (1 + y) / (1 - y) = (Z + Y) / (Z - Y).
  fe num, den, inv;
  F.add(num, h.Z, h.Y);
  F.sub(den, h.Z, h.Y);
  fe_invert(inv, den);
  F.mul(num, num, inv);
  fe_tobytes(out, num);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(e, sizeof e);
  OPENSSL_cleanse(&h, sizeof h);
  OPENSSL_cleanse(&r, sizeof r);
  OPENSSL_cleanse(&s, sizeof s);
  OPENSSL_cleanse(&t, sizeof t);
}

// ---- Resolution and self-checks ----------------------------------------------------------------

static void unhex(uint8_t *p, const char *hex) {
  for (int i = 0; i < 32; i++) { unsigned v = 0; sscanf(hex + 2 * i, "%2x", &v); p[i] = (uint8_t)v; }
}

static const char *const RFC_A = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
static const char *const RFC_B = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
static const char *const RFC_APUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
static const char *const RFC_BPUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";

// RFC 7748 §6.1: both public keys from the private ones, and the same secret from either side.
static bool rfc7748_holds(x25519_fn f, x25519_base_fn b) {
  uint8_t a[32], bb[32], apub[32], bpub[32], want_a[32], want_b[32], s1[32], s2[32];
  unhex(a, RFC_A); unhex(bb, RFC_B); unhex(want_a, RFC_APUB); unhex(want_b, RFC_BPUB);
  b(apub, a);
  b(bpub, bb);
  if (memcmp(apub, want_a, 32) != 0 || memcmp(bpub, want_b, 32) != 0) return false;
  return f(s1, a, bpub) == 1 && f(s2, bb, apub) == 1 && memcmp(s1, s2, 32) == 0;
}

// The fixed base against OpenSSL's own derivation, on the RFC keys and on keys whose digits hit
// every table entry and sign (a fixed pseudo-random walk, so a failure is reproducible).
static bool fixed_base_agrees(void) {
  uint8_t k[32], mine[32], theirs[32];
  unhex(k, RFC_A);
  for (int n = 0; n < 64; n++) {
    fixed_base(mine, k);
    raw_x25519_base(theirs, k);
    if (memcmp(mine, theirs, 32) != 0) return false;
    for (int i = 0; i < 32; i++) k[i] = (uint8_t)(k[i] * 181u + 97u + (uint8_t)n + mine[i]);
  }
  return true;
}

static void resolve(void) {
  x25519_fn f = (x25519_fn)dlsym(RTLD_DEFAULT, "ossl_x25519");
  x25519_base_fn b = (x25519_base_fn)dlsym(RTLD_DEFAULT, "ossl_x25519_public_from_private");
  if (!f || !b || !rfc7748_holds(f, b)) return;
  raw_x25519 = f;
  raw_x25519_base = b;
  int (*eligible)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "x25519_fe64_eligible");
  F.mul = (fe_mul_fn)dlsym(RTLD_DEFAULT, "x25519_fe64_mul");
  F.sqr = (fe_sqr_fn)dlsym(RTLD_DEFAULT, "x25519_fe64_sqr");
  F.add = (fe_mul_fn)dlsym(RTLD_DEFAULT, "x25519_fe64_add");
  F.sub = (fe_mul_fn)dlsym(RTLD_DEFAULT, "x25519_fe64_sub");
  // The fe64 routines exist only as stubs on a CPU without ADX/BMI2: ask before the first call.
  if (!eligible || !F.mul || !F.sqr || !F.add || !F.sub || !eligible()) return;
  build_table();
  fixed_base_ready = true;
  uint8_t a[32], apub[32], want[32];
  unhex(a, RFC_A); unhex(want, RFC_APUB);
  fixed_base(apub, a);
  fixed_base_ready = memcmp(apub, want, 32) == 0 && fixed_base_agrees();
}

// ---- EVP fallbacks -----------------------------------------------------------------------------

static bool evp_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]) {
  EVP_PKEY *sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, 32);
  EVP_PKEY_CTX *c = sk ? EVP_PKEY_CTX_new(sk, NULL) : NULL;
  size_t n = 32;
  bool ok = c && pk && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, pk) == 1 &&
            EVP_PKEY_derive(c, out, &n) == 1 && n == 32;
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(pk);
  EVP_PKEY_free(sk);
  return ok;
}

static bool evp_x25519_public(uint8_t out[32], const uint8_t priv[32]) {
  EVP_PKEY *sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  size_t n = 32;
  bool ok = sk && EVP_PKEY_get_raw_public_key(sk, out, &n) == 1 && n == 32;
  EVP_PKEY_free(sk);
  return ok;
}

static bool all_zero(const uint8_t *p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++) acc |= p[i];
  return acc == 0;
}

// ---- API ---------------------------------------------------------------------------------------

bool x25519_shared(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]) {
  pthread_once(&resolve_once, resolve);
  bool ok = raw_x25519 ? raw_x25519(out, priv, pub) == 1 : evp_x25519(out, priv, pub);
  ok = ok && !all_zero(out, 32);
  if (!ok) OPENSSL_cleanse(out, 32);
  return ok;
}

bool x25519_public(uint8_t out[32], const uint8_t priv[32]) {
  pthread_once(&resolve_once, resolve);
  if (fixed_base_ready) { fixed_base(out, priv); return true; }
  if (raw_x25519_base) { raw_x25519_base(out, priv); return true; }
  return evp_x25519_public(out, priv);
}

int x25519_backend(void) {
  pthread_once(&resolve_once, resolve);
  return (raw_x25519 ? X25519_RAW_LADDER : 0) | (fixed_base_ready ? X25519_FE64_FIXED_BASE : 0);
}
