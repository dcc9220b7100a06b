// Bulk AEAD with OpenSSL EVP (the copy inside node): one cipher context per key and direction,
// created once; per packet only the nonce is set (EVP_CipherInit_ex with a NULL key). In place.
// One descriptor shape serves WireGuard (nonce 0^4||counter LE, no AAD) and ESP AES-GCM
// (nonce salt||IV, AAD SPI||seq): the nonce and AAD bytes live in the same buffer as the packet.
#include "common.h"
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

typedef struct aead_ctx { EVP_CIPHER_CTX *enc, *dec; int tag_len; } aead_ctx;

enum { ALG_CHACHA20_POLY1305 = 0, ALG_AES_128_GCM = 1, ALG_AES_192_GCM = 2, ALG_AES_256_GCM = 3 };
#define DESC_STRIDE 6 // ctx, dataOff, dataLen, nonceOff, aadOff, aadLen

static void ctx_destroy(aead_ctx *c) {
  if (!c) return;
  EVP_CIPHER_CTX_free(c->enc);
  EVP_CIPHER_CTX_free(c->dec);
  free(c);
}

void aead_free_all(veil_state *st) {
  for (int i = 0; i < st->nctx; i++) ctx_destroy(st->ctxs[i]);
  free(st->ctxs);
  st->ctxs = NULL; st->nctx = st->cap = 0;
}

static bool init_dir(EVP_CIPHER_CTX *x, const EVP_CIPHER *c, const uint8_t *key, int enc) {
  return EVP_CipherInit_ex(x, c, NULL, NULL, NULL, enc) == 1 &&
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1 &&
         EVP_CipherInit_ex(x, NULL, NULL, key, NULL, enc) == 1;
}

// aeadCreate(alg, key, tagLen) -> handle >= 0 | error (-EINVAL bad alg/key/tag, -ENOMEM)
napi_value aead_create(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t alg, tag; uint8_t *key; size_t klen;
  NEED(arg_int(env, argv[0], &alg, "alg"));
  NEED(arg_bytes(env, argv[1], &key, &klen, "key"));
  NEED(arg_int(env, argv[2], &tag, "tagLen"));
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
  aead_ctx *x = calloc(1, sizeof *x);
  if (!x) return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM));
  x->tag_len = tag;
  x->enc = EVP_CIPHER_CTX_new(); x->dec = EVP_CIPHER_CTX_new();
  if (!x->enc || !x->dec || !init_dir(x->enc, c, key, 1) || !init_dir(x->dec, c, key, 0)) {
    ctx_destroy(x); return ret_int(env, VEIL_ERR(STAGE_ARG, ENOMEM));
  }
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

static bool crypt_one(aead_ctx *x, bool enc, uint8_t *buf, size_t blen, const int32_t *d) {
  int32_t off = d[1], len = d[2], noff = d[3], aoff = d[4], alen = d[5];
  if (!in_buf(off, len + x->tag_len, blen) || !in_buf(noff, 12, blen) || !in_buf(aoff, alen, blen)) return false;
  EVP_CIPHER_CTX *c = enc ? x->enc : x->dec;
  uint8_t *p = buf + off, *tag = p + len;
  int outl;
  if (EVP_CipherInit_ex(c, NULL, NULL, NULL, buf + noff, enc) != 1) return false;
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
static napi_value crypt_batch(napi_env env, napi_callback_info info, bool enc) {
  GET_ARGS(4);
  uint8_t *buf, *ok; int32_t n, *d; size_t blen, nd, nok;
  NEED(arg_bytes(env, argv[0], &buf, &blen, "buf"));
  NEED(arg_int(env, argv[1], &n, "n"));
  NEED(arg_i32s(env, argv[2], &d, &nd, "descs"));
  NEED(arg_bytes(env, argv[3], &ok, &nok, "ok"));
  if (n < 0 || (size_t)n * DESC_STRIDE > nd || (size_t)n > nok) return throw_range(env, "veil_datapath: AEAD batch n exceeds descriptors");
  veil_state *S = veil_get_state(env);
  int good = 0;
  for (int i = 0; i < n; i++) {
    const int32_t *di = d + (size_t)i * DESC_STRIDE;
    int32_t h = di[0];
    aead_ctx *x = h >= 0 && h < S->nctx ? S->ctxs[h] : NULL;
    ok[i] = x && crypt_one(x, enc, buf, blen, di) ? 1 : 0;
    good += ok[i];
  }
  return ret_int(env, good);
}

napi_value aead_seal_batch(napi_env env, napi_callback_info info) { return crypt_batch(env, info, true); }
napi_value aead_open_batch(napi_env env, napi_callback_info info) { return crypt_batch(env, info, false); }
