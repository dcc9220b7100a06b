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
// Where the CPU has AVX-512 IFMA, shared secrets run on vector ladders instead (native/x25519-ifma.c):
// one or two (a message's ee and se) on pairs of lanes, in less time than one scalar ladder.
//
// Every fast path is checked against RFC 7748's test vectors (and the fixed base against OpenSSL's
// own derivation) once; without the symbols (a node linking a shared libcrypto) or on a mismatch,
// the EVP path or OpenSSL's derivation serves.
#include "x25519.h"
#include "x25519-ifma.h"
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

// u(clamp(priv) * B) = num / den (projective: the caller divides, maybe in a batch).
static void fixed_base_fraction(fe num, fe den, const uint8_t priv[32]) {
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
  F.add(num, h.Z, h.Y);
  F.sub(den, h.Z, h.Y);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(e, sizeof e);
  OPENSSL_cleanse(&h, sizeof h);
  OPENSSL_cleanse(&r, sizeof r);
  OPENSSL_cleanse(&s, sizeof s);
  OPENSSL_cleanse(&t, sizeof t);
}

// out = the X25519 public key of priv: the u coordinate of clamp(priv) * B.
static void fixed_base(uint8_t out[32], const uint8_t priv[32]) {
  fe num, den, inv;
  fixed_base_fraction(num, den, priv);
  fe_invert(inv, den);
  F.mul(num, num, inv);
  fe_tobytes(out, num);
  OPENSSL_cleanse(num, sizeof num);
  OPENSSL_cleanse(den, sizeof den);
  OPENSSL_cleanse(inv, sizeof inv);
}

// ---- Montgomery ladder (RFC 7748 §5) on the fe64 routines, inversions shared -----------------
// The same ladder OpenSSL runs, ending at the projective (x2 : z2) so that the several results a
// handshake message needs (our ephemeral's public key and one or two shared secrets) pay one
// field inversion between them (Montgomery's trick) instead of one each (~10 % of a ladder).

static fe_sqr_fn mul121666; // h = 121666 f
static bool ladder_ready;
static bool ifma_ready;       // shared secrets on the vector ladders of native/x25519-ifma.c
static uint64_t ifma_batches; // how many batches took them (tests read it)

static void fe_frombytes(fe h, const uint8_t s[32]) {
  for (int i = 0; i < 4; i++) {
    h[i] = 0;
    for (int j = 0; j < 8; j++) h[i] |= (uint64_t)s[8 * i + j] << (8 * j);
  }
  h[3] &= 0x7fffffffffffffffULL; // RFC 7748: the top bit of u is ignored
}

// Swaps f and g when b == 1, without a branch on b.
static void fe_cswap(fe f, fe g, uint64_t b) {
  uint64_t mask = (uint64_t)0 - b;
  for (int i = 0; i < 4; i++) {
    uint64_t x = mask & (f[i] ^ g[i]);
    f[i] ^= x;
    g[i] ^= x;
  }
}

// u(clamp(scalar) * P) = x2 / z2, for P of u-coordinate point.
static void ladder(fe x2, fe z2, const uint8_t scalar[32], const uint8_t point[32]) {
  uint8_t e[32];
  memcpy(e, scalar, 32);
  e[0] &= 248; e[31] &= 127; e[31] |= 64;
  fe x1, x3, z3, t0, t1;
  fe_frombytes(x1, point);
  fe_one(x2); fe_zero(z2); fe_copy(x3, x1); fe_one(z3);
  // The routines in registers (through the global table each call would reload its pointer), and
  // OpenSSL's order of the step: independent pairs side by side, so the CPU overlaps them.
  const fe_mul_fn mul = F.mul, add = F.add, sub = F.sub;
  const fe_sqr_fn sqr = F.sqr, mul_a24 = mul121666;
  uint64_t swap = 0;
  for (int pos = 254; pos >= 0; pos--) {
    uint64_t bit = (e[pos / 8] >> (pos & 7)) & 1;
    swap ^= bit;
    fe_cswap(x2, x3, swap);
    fe_cswap(z2, z3, swap);
    swap = bit;
    sub(t0, x3, z3); sub(t1, x2, z2); add(x2, x2, z2); add(z2, x3, z3); // D, B, A, C
    mul(z3, x2, t0); mul(z2, z2, t1);                                    // DA, CB
    sqr(t0, t1); sqr(t1, x2);                                            // BB, AA
    add(x3, z3, z2); sub(z2, z3, z2);                                    // DA + CB, DA - CB
    mul(x2, t1, t0); sub(t1, t1, t0);                                    // x2 = AA BB, E = AA - BB
    sqr(z2, z2); mul_a24(z3, t1);
    sqr(x3, x3); add(t0, t0, z3);                                        // x3 = (DA + CB)^2, BB + 121666 E
    mul(z3, x1, z2); mul(z2, t1, t0);                                    // z3 = x1 (DA - CB)^2, z2 = E (AA + 121665 E)
  }
  fe_cswap(x2, x3, swap);
  fe_cswap(z2, z3, swap);
  OPENSSL_cleanse(e, sizeof e);
  OPENSSL_cleanse(x3, sizeof x3); OPENSSL_cleanse(z3, sizeof z3);
  OPENSSL_cleanse(t0, sizeof t0); OPENSSL_cleanse(t1, sizeof t1);
}

// 1 when f is 0 mod p, without a branch.
static uint64_t fe_is_zero(const fe f) {
  uint8_t s[32];
  fe_tobytes(s, f);
  uint32_t acc = 0;
  for (int i = 0; i < 32; i++) acc |= s[i];
  return (uint64_t)((acc - 1) >> 31);
}

// outs[i] = x[i] / z[i] (i < n <= X25519_MANY_MAX) with one inversion. A zero z gives 0 (what the
// ladder's z^(p-2) gives: a low-order point).
static void fe_divide_many(uint8_t *const outs[], fe x[], fe z[], int n) {
  if (n < 1) return;
  fe prefix[X25519_MANY_MAX], inv, t, one, zero;
  fe_one(one); fe_zero(zero);
  for (int i = 0; i < n; i++) {
    uint64_t bad = fe_is_zero(z[i]);
    fe_cmov(z[i], one, bad);
    fe_cmov(x[i], zero, bad);
    if (i == 0) fe_copy(prefix[0], z[0]);
    else F.mul(prefix[i], prefix[i - 1], z[i]);
  }
  fe_invert(inv, prefix[n - 1]); // 1 / (z0 ... z(n-1))
  for (int i = n - 1; i > 0; i--) {
    F.mul(t, inv, prefix[i - 1]); // 1 / z[i]
    F.mul(inv, inv, z[i]);        // 1 / (z0 ... z(i-1))
    F.mul(t, x[i], t);
    fe_tobytes(outs[i], t);
  }
  F.mul(t, x[0], inv);
  fe_tobytes(outs[0], t);
  OPENSSL_cleanse(prefix, sizeof prefix);
  OPENSSL_cleanse(inv, sizeof inv);
  OPENSSL_cleanse(t, sizeof t);
}

// The m ladders of a batch: outputs x[i] / z[i] = X25519(privs[i], pubs[i]), all in one run of the
// IFMA lanes where that path passed its check, else one after the other on the fe64 routines.
static void ladders(fe x[], fe z[], const uint8_t *const privs[], const uint8_t *const pubs[], int m) {
  if (ifma_ready && m >= 1) {
    uint64_t lx[X25519_MANY_MAX][4], lz[X25519_MANY_MAX][4];
    x25519_ifma_ladders(lx, lz, privs, pubs, m);
    for (int i = 0; i < m; i++) { fe_copy(x[i], lx[i]); fe_copy(z[i], lz[i]); }
    OPENSSL_cleanse(lx, sizeof lx);
    OPENSSL_cleanse(lz, sizeof lz);
    __atomic_fetch_add(&ifma_batches, 1, __ATOMIC_RELAXED);
    return;
  }
  for (int i = 0; i < m; i++) ladder(x[i], z[i], privs[i], pubs[i]);
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

// The shared ladder and the batched division against OpenSSL's ladder: the RFC keys, then a fixed
// pseudo-random walk of keys and points, in batches of 1 to X25519_MANY_MAX.
static bool ladder_agrees(void) {
  uint8_t k[X25519_MANY_MAX][32], u[X25519_MANY_MAX][32], mine[X25519_MANY_MAX][32], theirs[32];
  uint8_t *outs[X25519_MANY_MAX];
  fe x[X25519_MANY_MAX], z[X25519_MANY_MAX];
  for (int i = 0; i < X25519_MANY_MAX; i++) { unhex(k[i], RFC_A); unhex(u[i], RFC_BPUB); k[i][0] ^= (uint8_t)i; outs[i] = mine[i]; }
  for (int round = 0; round < 48; round++) {
    int n = 1 + round % X25519_MANY_MAX;
    for (int i = 0; i < n; i++) ladder(x[i], z[i], k[i], u[i]);
    fe_divide_many(outs, x, z, n);
    for (int i = 0; i < n; i++) {
      if (raw_x25519(theirs, k[i], u[i]) != 1 || memcmp(mine[i], theirs, 32) != 0) return false;
      for (int j = 0; j < 32; j++) {
        k[i][j] = (uint8_t)(k[i][j] * 181u + 97u + (uint8_t)round + theirs[j]);
        u[i][j] = (uint8_t)(u[i][j] * 109u + 31u + (uint8_t)i + theirs[31 - j]);
      }
    }
  }
  return true;
}


// The IFMA lanes against OpenSSL's ladder: RFC 7748 §5.2's two vectors and §6.1's exchange (each
// side's secret in one batch), then a fixed pseudo-random walk of keys and points in batches of 1
// to X25519_MANY_MAX, some with u-coordinates above p and the ignored top bit set.
static bool ifma_agrees(void) {
  static const char *const rfc52[2][3] = {
    {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
    {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
  };
  uint8_t k[X25519_MANY_MAX][32], u[X25519_MANY_MAX][32], mine[X25519_MANY_MAX][32], want[X25519_MANY_MAX][32];
  uint8_t *outs[X25519_MANY_MAX];
  const uint8_t *ks[X25519_MANY_MAX], *us[X25519_MANY_MAX];
  fe x[X25519_MANY_MAX], z[X25519_MANY_MAX];
  for (int i = 0; i < X25519_MANY_MAX; i++) { outs[i] = mine[i]; ks[i] = k[i]; us[i] = u[i]; }
  for (int i = 0; i < 2; i++) { unhex(k[i], rfc52[i][0]); unhex(u[i], rfc52[i][1]); unhex(want[i], rfc52[i][2]); }
  unhex(k[2], RFC_A); unhex(u[2], RFC_BPUB); unhex(k[3], RFC_B); unhex(u[3], RFC_APUB);
  x25519_ifma_ladders((uint64_t(*)[4])x, (uint64_t(*)[4])z, ks, us, 4);
  fe_divide_many(outs, x, z, 4);
  if (memcmp(mine[0], want[0], 32) != 0 || memcmp(mine[1], want[1], 32) != 0 || memcmp(mine[2], mine[3], 32) != 0) return false;
  for (int round = 0; round < 24; round++) {
    int n = 1 + round % X25519_MANY_MAX;
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < 32; j++) {
        k[i][j] = (uint8_t)(k[i][j] * 181u + 97u + (uint8_t)round + mine[i][j]);
        u[i][j] = (uint8_t)(u[i][j] * 109u + 31u + (uint8_t)i + mine[i][31 - j]);
      }
      if (round % 6 == i) { memset(u[i], 0xff, 32); u[i][0] = (uint8_t)(0xef + round % 17); } // p + 2 .. p + 18, top bit set
    }
    x25519_ifma_ladders((uint64_t(*)[4])x, (uint64_t(*)[4])z, ks, us, n);
    fe_divide_many(outs, x, z, n);
    for (int i = 0; i < n; i++)
      if (raw_x25519(want[i], k[i], u[i]) != 1 || memcmp(mine[i], want[i], 32) != 0) return false;
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
  mul121666 = (fe_sqr_fn)dlsym(RTLD_DEFAULT, "x25519_fe64_mul121666");
  ladder_ready = fixed_base_ready && mul121666 && ladder_agrees();
  ifma_ready = ladder_ready && x25519_ifma_supported() && ifma_agrees();
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
  if (ifma_ready) { // the IFMA pair of lanes beats OpenSSL's ladder
    uint8_t *outs[1] = {out};
    const uint8_t *privs[1] = {priv}, *pubs[1] = {pub};
    bool ok;
    return x25519_many(outs, privs, pubs, 1, &ok);
  }
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

bool x25519_many(uint8_t *const outs[], const uint8_t *const privs[], const uint8_t *const pubs[], int n, bool oks[]) {
  pthread_once(&resolve_once, resolve);
  if (n < 1 || n > X25519_MANY_MAX) return false;
  if (!ladder_ready) {
    bool all = true;
    for (int i = 0; i < n; i++) all &= (oks[i] = pubs[i] ? x25519_shared(outs[i], privs[i], pubs[i]) : x25519_public(outs[i], privs[i]));
    return all;
  }
  // The ladders first (gathered: on the IFMA lanes they run together), then the public keys.
  fe x[X25519_MANY_MAX], z[X25519_MANY_MAX];
  const uint8_t *lprivs[X25519_MANY_MAX], *lpubs[X25519_MANY_MAX];
  uint8_t *louts[X25519_MANY_MAX] = {0};
  // On the IFMA lanes one ladder costs what two do: a public key takes the free pair of lanes as
  // the ladder on u = 9 (the base point), saving the comb (the initiation's ephemeral beside es).
  static const uint8_t base_u[32] = {9};
  const uint8_t *lanes[X25519_MANY_MAX];
  int laddered = 0, m = 0;
  for (int i = 0; i < n; i++) laddered += pubs[i] != NULL;
  for (int i = 0; i < n; i++) {
    lanes[i] = pubs[i] ? pubs[i] : ifma_ready && laddered < 2 ? base_u : NULL;
    laddered += !pubs[i] && lanes[i];
  }
  for (int i = 0; i < n; i++)
    if (lanes[i]) { lprivs[m] = privs[i]; lpubs[m] = lanes[i]; louts[m++] = outs[i]; }
  ladders(x, z, lprivs, lpubs, m);
  for (int i = 0; i < n; i++)
    if (!lanes[i]) { fixed_base_fraction(x[m], z[m], privs[i]); louts[m++] = outs[i]; }
  fe_divide_many(louts, x, z, n);
  bool all = true;
  for (int i = 0; i < n; i++) {
    oks[i] = !pubs[i] || !all_zero(outs[i], 32);
    all &= oks[i];
  }
  OPENSSL_cleanse(x, sizeof x);
  OPENSSL_cleanse(z, sizeof z);
  return all;
}

int x25519_backend(void) {
  pthread_once(&resolve_once, resolve);
  return (raw_x25519 ? X25519_RAW_LADDER : 0) | (fixed_base_ready ? X25519_FE64_FIXED_BASE : 0) | (ladder_ready ? X25519_FE64_LADDER : 0) |
         (ifma_ready ? X25519_IFMA_LANES : 0);
}

uint64_t x25519_ifma_batch_count(void) { return __atomic_load_n(&ifma_batches, __ATOMIC_RELAXED); }
