// Bulk AEAD with OpenSSL EVP (the copy inside node): one cipher context per key, direction and
// crypto thread, created once; per packet only the nonce is set (EVP_CipherInit_ex with a NULL key).
// In place. One descriptor shape serves WireGuard (nonce 0^4||counter LE, no AAD) and ESP AES-GCM
// (nonce salt||IV, AAD SPI||seq): the nonce and AAD bytes live in the same buffer as the packet.
// A large batch is split by bytes between the calling worker and its crypto pool (crypto-pool.c),
// as kernel WireGuard and wireguard-go hand batches to per-CPU crypto workers.
#include "common.h"
#include "crypto-pool.h"
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// enc[0]/dec[0] belong to the calling thread; enc[t]/dec[t] to pool thread t, copied from [0]
// by the caller (never while a batch runs) the first time thread t needs this key. A key made for
// one direction has only that direction's contexts (an ESP SA seals or opens, never both): an
// AES-GCM context holds ~1.5 KB of native memory, and an agent holds a key per SA per peer.
// A ChaCha20-Poly1305 key has no contexts of its own: its key schedule is the key itself, so the
// thread's shared context for its way takes the key at the packet (~1.3 KB of malloc a context kept
// per key and way otherwise, and a WireGuard agent keeps thousands: a peer's keypair both ways while
// it carries probes and keepalives). `id` says which key a shared context holds (ids are not reused,
// addresses are), so a batch of one key's packets sets it once.
// A shared key is allocated without enc/dec (offsetof: 80 B of malloc instead of 208).
typedef struct aead_ctx {
  int tag_len, cost, pool_threads;
  bool shared;
  int use; // a shared key's ways (USE_SEAL, USE_OPEN)
  uint64_t id;
  uint8_t key[32];
  EVP_CIPHER_CTX *enc[VEIL_MAX_CRYPTO_THREADS], *dec[VEIL_MAX_CRYPTO_THREADS]; // last: see above
} aead_ctx;

struct aead_shared {
  EVP_CIPHER_CTX *ctx[2][VEIL_MAX_CRYPTO_THREADS]; // [enc][thread]
  uint64_t holds[2][VEIL_MAX_CRYPTO_THREADS];      // the id of the key each has now (0: none)
  uint64_t next_id;
};

// Work per byte that is worth sharing. AES-NI GCM (~27 Gbit/s on one core here) finishes a whole
// batch faster than a helper wakes up (bench/aead-batch.ts: 0.87-0.95x with 2 threads), so it
// stays on the calling thread; ChaCha20-Poly1305 (~10 Gbit/s) gains 1.3-1.8x.
enum { COST_AES_GCM = 0, COST_CHACHA = 1 };

enum { ALG_CHACHA20_POLY1305 = 0, ALG_AES_128_GCM = 1, ALG_AES_192_GCM = 2, ALG_AES_256_GCM = 3 };
enum { USE_SEAL = 1, USE_OPEN = 2 };
#define DESC_STRIDE 6 // ctx, dataOff, dataLen, nonceOff, aadOff, aadLen

static void ctx_destroy(aead_ctx *c) {
  if (!c) return;
  for (int t = 0; !c->shared && t < VEIL_MAX_CRYPTO_THREADS; t++) {
    EVP_CIPHER_CTX_free(c->enc[t]);
    EVP_CIPHER_CTX_free(c->dec[t]);
  }
  OPENSSL_cleanse(c->key, sizeof c->key);
  free(c);
}

void aead_free_all(veil_state *st) {
  crypto_pool_destroy(st->pool);
  st->pool = NULL;
  if (st->shared) {
    for (int e = 0; e < 2; e++)
      for (int t = 0; t < VEIL_MAX_CRYPTO_THREADS; t++) EVP_CIPHER_CTX_free(st->shared->ctx[e][t]);
    free(st->shared);
    st->shared = NULL;
  }
  for (int i = 0; i < st->nctx; i++) ctx_destroy(st->ctxs[i]);
  free(st->ctxs);
  st->ctxs = NULL; st->nctx = st->cap = 0;
}

static bool init_dir(EVP_CIPHER_CTX *x, const EVP_CIPHER *c, const uint8_t *key, int enc) {
  return EVP_CipherInit_ex(x, c, NULL, NULL, NULL, enc) == 1 &&
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1 &&
         EVP_CipherInit_ex(x, NULL, NULL, key, NULL, enc) == 1;
}

// aeadCreate(alg, key, tagLen, use) -> handle >= 0 | error (-EINVAL bad alg/key/tag/use, -ENOMEM).
// use: USE_SEAL, USE_OPEN or both; a batch of the other direction fails the key's packets.
napi_value aead_create(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  int32_t alg, tag, use; uint8_t *key; size_t klen;
  NEED(arg_int(env, argv[0], &alg, "alg"));
  NEED(arg_bytes(env, argv[1], &key, &klen, "key"));
  NEED(arg_int(env, argv[2], &tag, "tagLen"));
  NEED(arg_int(env, argv[3], &use, "use"));
  if (use < USE_SEAL || use > (USE_SEAL | USE_OPEN)) return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  const EVP_CIPHER *c; size_t want;
  switch (alg) {
    case ALG_CHACHA20_POLY1305: c = EVP_chacha20_poly1305(); want = 32; break;
    case ALG_AES_128_GCM: c = EVP_aes_128_gcm(); want = 16; break;
    case ALG_AES_192_GCM: c = EVP_aes_192_gcm(); want = 24; break;
    case ALG_AES_256_GCM: c = EVP_aes_256_gcm(); want = 32; break;
    default: return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  }
  bool tag_ok = alg == ALG_CHACHA20_POLY1305 ? tag == 16 : (tag == 8 || tag == 12 || tag == 16);
  if (klen != want || !tag_ok || !c) return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  veil_state *S = veil_get_state(env);
  aead_ctx *x = calloc(1, alg == ALG_CHACHA20_POLY1305 ? offsetof(aead_ctx, enc) : sizeof *x);
  if (!x) return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM));
  x->tag_len = tag;
  x->shared = alg == ALG_CHACHA20_POLY1305;
  x->cost = alg == ALG_CHACHA20_POLY1305 ? COST_CHACHA : COST_AES_GCM;
  x->pool_threads = 1;
  bool ok = true;
  if (alg == ALG_CHACHA20_POLY1305) {
    if (!S->shared && !(S->shared = calloc(1, sizeof *S->shared))) { ctx_destroy(x); return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM)); }
    x->id = ++S->shared->next_id;
    memcpy(x->key, key, 32);
    x->pool_threads = VEIL_MAX_CRYPTO_THREADS; // nothing to copy for the pool
    x->use = use;
  } else {
    if (use & USE_SEAL) ok = (x->enc[0] = EVP_CIPHER_CTX_new()) && init_dir(x->enc[0], c, key, 1);
    if (ok && (use & USE_OPEN)) ok = (x->dec[0] = EVP_CIPHER_CTX_new()) && init_dir(x->dec[0], c, key, 0);
  }
  if (!ok) { ctx_destroy(x); return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM)); }
  int slot = -1;
  for (int i = 0; i < S->nctx; i++) if (!S->ctxs[i]) { slot = i; break; } // reuse freed handles
  if (slot < 0) {
    if (S->nctx == S->cap) {
      int ncap = S->cap ? S->cap * 2 : 64;
      aead_ctx **nc = realloc(S->ctxs, sizeof *nc * (size_t)ncap);
      if (!nc) { ctx_destroy(x); return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM)); }
      S->ctxs = nc; S->cap = ncap;
    }
    slot = S->nctx++;
  }
  S->ctxs[slot] = x;
  return ret_int(env, slot);
}

// aeadFree(handle) -> 0 | -EINVAL. The key material is wiped by EVP_CIPHER_CTX_free.
napi_value aead_free(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t h;
  NEED(arg_int(env, argv[0], &h, "handle"));
  veil_state *S = veil_get_state(env);
  if (h < 0 || h >= S->nctx || !S->ctxs[h]) return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  ctx_destroy(S->ctxs[h]);
  S->ctxs[h] = NULL;
  return ret_int(env, 0);
}

static bool in_buf(int32_t off, int32_t len, size_t blen) {
  return off >= 0 && len >= 0 && (size_t)off + (size_t)len <= blen;
}

// Thread t's shared ChaCha20-Poly1305 context for one way, holding x's key (made at its first use:
// thread t alone touches slot t while a batch runs).
static EVP_CIPHER_CTX *shared_for(struct aead_shared *sh, aead_ctx *x, int t, bool enc, const uint8_t **key) {
  EVP_CIPHER_CTX **c = &sh->ctx[enc][t];
  if (!*c) {
    if (!(*c = EVP_CIPHER_CTX_new())) return NULL;
    if (!init_dir(*c, EVP_chacha20_poly1305(), x->key, enc)) { EVP_CIPHER_CTX_free(*c); *c = NULL; return NULL; }
    sh->holds[enc][t] = x->id;
  }
  *key = sh->holds[enc][t] == x->id ? NULL : x->key;
  sh->holds[enc][t] = x->id;
  return *c;
}

static bool crypt_one(veil_state *S, aead_ctx *x, int t, bool enc, uint8_t *buf, size_t blen, const int32_t *d) {
  int32_t off = d[1], len = d[2], noff = d[3], aoff = d[4], alen = d[5];
  if (!in_buf(off, len + x->tag_len, blen) || !in_buf(noff, 12, blen) || !in_buf(aoff, alen, blen)) return false;
  const uint8_t *key = NULL;
  if (x->shared && !(x->use & (enc ? USE_SEAL : USE_OPEN))) return false;
  EVP_CIPHER_CTX *c = x->shared ? shared_for(S->shared, x, t, enc, &key) : enc ? x->enc[t] : x->dec[t];
  if (!c) return false;
  uint8_t *p = buf + off, *tag = p + len;
  int outl;
  if (EVP_CipherInit_ex(c, NULL, NULL, key, buf + noff, enc) != 1) {
    if (x->shared) S->shared->holds[enc][t] = 0;
    return false;
  }
  if (alen > 0 && EVP_CipherUpdate(c, NULL, &outl, buf + aoff, alen) != 1) return false;
  if (len > 0 && EVP_CipherUpdate(c, p, &outl, p, len) != 1) return false;
  if (enc) {
    return EVP_CipherFinal_ex(c, p + len, &outl) == 1 &&
           EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, x->tag_len, tag) == 1;
  }
  return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, x->tag_len, tag) == 1 &&
         EVP_CipherFinal_ex(c, p + len, &outl) == 1;
}
// sealBatch/openBatch(buf, n, descs: Int32Array (6 per packet), ok: Uint8Array) -> packets ok.
// Packet i: ctx = descs[6i], data at descs[6i+1] of length descs[6i+2] (plaintext to seal or
// ciphertext to open, tag right after it), nonce at descs[6i+3] (12 bytes), AAD at descs[6i+4] of
// length descs[6i+5]. ok[i] = 1 on success; a failed open leaves garbage in place (drop it).
typedef struct {
  veil_state *S; bool enc; uint8_t *buf; size_t blen; const int32_t *d; uint8_t *ok;
} batch_job;

static aead_ctx *ctx_of(veil_state *S, int32_t h) {
  return h >= 0 && h < S->nctx ? S->ctxs[h] : NULL;
}

static int crypt_range(void *j, int t, int begin, int end) {
  batch_job *b = j;
  int good = 0;
  for (int i = begin; i < end; i++) {
    const int32_t *di = b->d + (size_t)i * DESC_STRIDE;
    aead_ctx *x = ctx_of(b->S, di[0]);
    b->ok[i] = x && crypt_one(b->S, x, t, b->enc, b->buf, b->blen, di) ? 1 : 0;
    good += b->ok[i];
  }
  return good;
}

// Gives every key of the batch a context for each pool thread, before any thread starts.
static bool contexts_for_pool(veil_state *S, const int32_t *d, int n, int threads) {
  for (int i = 0; i < n; i++) {
    aead_ctx *x = ctx_of(S, d[(size_t)i * DESC_STRIDE]);
    if (!x || x->pool_threads >= threads) continue;
    for (int t = x->pool_threads; t < threads; t++) {
      bool ok = true;
      if (x->enc[0]) ok = (x->enc[t] = EVP_CIPHER_CTX_new()) && EVP_CIPHER_CTX_copy(x->enc[t], x->enc[0]) == 1;
      if (ok && x->dec[0]) ok = (x->dec[t] = EVP_CIPHER_CTX_new()) && EVP_CIPHER_CTX_copy(x->dec[t], x->dec[0]) == 1;
      if (!ok) {
        EVP_CIPHER_CTX_free(x->enc[t]); EVP_CIPHER_CTX_free(x->dec[t]);
        x->enc[t] = x->dec[t] = NULL;
        return false;
      }
      x->pool_threads = t + 1;
    }
  }
  return true;
}

// Below this much work (bytes x cost) a batch is cheaper on the calling thread alone: waking a
// helper costs more than it saves (break-even measured with bench/aead-batch.ts: ~30 ChaCha
// packets of 1420 bytes).
#define POOL_MIN_WORK (48 * 1024)

static napi_value crypt_batch(napi_env env, napi_callback_info info, bool enc) {
  GET_ARGS(4);
  uint8_t *buf, *ok; int32_t n, *d; size_t blen, nd, nok;
  NEED(arg_bytes(env, argv[0], &buf, &blen, "buf"));
  NEED(arg_int(env, argv[1], &n, "n"));
  NEED(arg_i32s(env, argv[2], &d, &nd, "descs"));
  NEED(arg_bytes(env, argv[3], &ok, &nok, "ok"));
  if (n < 0 || (size_t)n * DESC_STRIDE > nd || (size_t)n > nok) return throw_range(env, "veil_datapath: AEAD batch n exceeds descriptors");
  veil_state *S = veil_get_state(env);
  batch_job job = { S, enc, buf, blen, d, ok };
  int threads = crypto_pool_threads(S->pool);
  if (threads > 1) {
    int64_t work = 0;
    for (int i = 0; i < n; i++) {
      aead_ctx *x = ctx_of(S, d[(size_t)i * DESC_STRIDE]);
      if (x) work += (int64_t)d[(size_t)i * DESC_STRIDE + 2] * x->cost;
    }
    if (work >= POOL_MIN_WORK && contexts_for_pool(S, d, n, threads)) {
      S->pool_batches++;
      return ret_int(env, crypto_pool_run(S->pool, crypt_range, &job, n));
    }
  }
  return ret_int(env, crypt_range(&job, 0, 0, n));
}

// aeadPoolBatches() -> how many batches this worker has shared with its crypto pool.
napi_value aead_pool_batches(napi_env env, napi_callback_info info) {
  napi_value r;
  napi_create_double(env, veil_get_state(env)->pool_batches, &r);
  return r;
}

// aeadSetThreads(n) -> n | -EINVAL | -ENOMEM: crypto threads in all for this worker's batches,
// itself included (1 = no pool). Keys keep working; contexts for new threads are made on first use.
napi_value aead_set_threads(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t n;
  NEED(arg_int(env, argv[0], &n, "threads"));
  if (n < 1 || n > VEIL_MAX_CRYPTO_THREADS) return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  veil_state *S = veil_get_state(env);
  if (crypto_pool_threads(S->pool) == n) return ret_int(env, n);
  crypto_pool *p = n > 1 ? crypto_pool_create(n) : NULL;
  if (n > 1 && !p) return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM));
  crypto_pool_destroy(S->pool);
  S->pool = p;
  return ret_int(env, n);
}

napi_value aead_seal_batch(napi_env env, napi_callback_info info) { return crypt_batch(env, info, true); }
napi_value aead_open_batch(napi_env env, napi_callback_info info) { return crypt_batch(env, info, false); }
