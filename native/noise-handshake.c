// WireGuard's four handshake steps (Noise_IKpsk2, paper §5.4.2-5.4.3) as one crossing each: every
// hash, KDF, AEAD and Diffie-Hellman of a message in C, on the handshake's 256-byte work slab.
// Why: as separate primitives a handshake made ~45 crossings and a dozen short-lived arrays.
// TypeScript keeps every decision (which peer, replay, flood, state); src/wireguard/noise-handshake.ts
// holds the same steps on the primitives, which serve without the addon and prove these equal.
//
// Work slab (WORK_* below, HandshakeWork in TypeScript): h, ck, two KDF outputs after ck, a DH
// scratch, the remote ephemeral, our ephemeral private key and its public key.
#include "common.h"
#include "noise-crypto.h"
#include "x25519.h"
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

enum { W_H = 0, W_CK = 32, W_T1 = 64, W_T2 = 96, W_DH = 128, W_RE = 160, W_EPH = 192, W_EPH_PUB = 224, WORK_SIZE = 256 };
// Message fields (messages.ts).
enum { INIT_SIZE = 148, INIT_EPH = 8, INIT_STATIC = 40, INIT_TIMESTAMP = 88 };
enum { RESP_SIZE = 92, RESP_EPH = 12, RESP_EMPTY = 44 };

static const uint8_t ZERO_NONCE[12];
static uint8_t initial_chain_key[32], initial_hash[32];

// h = HASH(h || data)
static void mix_hash(uint8_t *w, const uint8_t *data, size_t n) {
  noise_blake2s_raw(w + W_H, 32, NULL, 0, w + W_H, 32, data, n, NULL, 0);
}

// A fresh ephemeral private key (generate) or the one already in the slab (tests), clamped.
static bool ephemeral(uint8_t *w, int generate) {
  if (generate && RAND_bytes(w + W_EPH, 32) != 1) return false;
  w[W_EPH] &= 248; w[W_EPH + 31] &= 127; w[W_EPH + 31] |= 64;
  return true;
}

// Reads n byte arrays with their exact sizes (0: any); false after throwing.
static bool sized_args(napi_env env, napi_value *argv, int n, uint8_t **p, const size_t *want, const char *const *names, size_t *len) {
  for (int i = 0; i < n; i++) {
    size_t got;
    if (!arg_bytes(env, argv[i], &p[i], &got, names[i])) return false;
    if (want[i] && got != want[i]) {
      throw_range(env, "noise handshake step: an argument has the wrong size (work 256, message 148/92, keys 32, timestamp 12)");
      return false;
    }
    if (len) len[i] = got;
  }
  return true;
}

// noiseCreateInitiation(work, msg, localPublic, remoteStatic, staticStatic, timestamp, generate):
// fills msg's ephemeral, encrypted static and encrypted timestamp (the work slab must be zero: a
// fresh handshake). generate 0 keeps the ephemeral private key already in work. 1, or 0 when the
// remote key is unusable (or the RNG failed).
static napi_value create_initiation(napi_env env, napi_callback_info info) {
  GET_ARGS(7);
  static const char *const names[] = {"work", "msg", "localPublic", "remoteStatic", "staticStatic", "timestamp"};
  static const size_t sizes[] = {WORK_SIZE, INIT_SIZE, 32, 32, 32, 12};
  uint8_t *p[6]; int32_t generate;
  NEED(sized_args(env, argv, 6, p, sizes, names, NULL));
  NEED(arg_int(env, argv[6], &generate, "generate"));
  uint8_t *w = p[0], *msg = p[1], *spub = p[2], *rs = p[3], *ss = p[4], *ts = p[5];
  if (!ephemeral(w, generate)) return ret_int(env, 0);
  // Our ephemeral's public key and es, one inversion between them.
  uint8_t *outs[2] = {w + W_EPH_PUB, w + W_DH};
  const uint8_t *privs[2] = {w + W_EPH, w + W_EPH}, *pubs[2] = {NULL, rs};
  bool oks[2];
  bool ok = x25519_many(outs, privs, pubs, 2, oks);
  memcpy(msg + INIT_EPH, w + W_EPH_PUB, 32);
  noise_blake2s_raw(w + W_H, 32, NULL, 0, initial_hash, 32, rs, 32, NULL, 0);
  mix_hash(w, w + W_EPH_PUB, 32);
  noise_hkdf(w + W_CK, 32, initial_chain_key, w + W_EPH_PUB, 32);
  if (ok) {
    noise_hkdf(w + W_CK, 64, w + W_CK, w + W_DH, 32);
    ok = chacha_poly(1, msg + INIT_STATIC, 48, w + W_T1, ZERO_NONCE, w + W_H, 32, spub, 32);
    mix_hash(w, msg + INIT_STATIC, 48);
    noise_hkdf(w + W_CK, 64, w + W_CK, ss, 32);
    ok = ok && chacha_poly(1, msg + INIT_TIMESTAMP, 28, w + W_T1, ZERO_NONCE, w + W_H, 32, ts, 12);
    mix_hash(w, msg + INIT_TIMESTAMP, 28);
  }
  OPENSSL_cleanse(w + W_T1, W_RE - W_T1); // t1, t2, dh
  return ret_int(env, ok ? 1 : 0);
}

// noiseConsumeInitiationStatic(work, msg, localPrivate, responderInitialHash, staticOut, generate):
// the first half of consuming an initiation, up to the sender's static key (the caller then finds
// the peer). It also draws our ephemeral for the response (generate 0 keeps the private key
// already in work: tests) and computes its public key beside es: es alone would leave a pair of
// IFMA lanes idle, and the response's own batch (ee, se) fills them, so this saves the comb there.
// 1, or 0 when it does not decrypt.
static napi_value consume_initiation_static(napi_env env, napi_callback_info info) {
  GET_ARGS(6);
  static const char *const names[] = {"work", "msg", "localPrivate", "responderInitialHash", "staticOut"};
  static const size_t sizes[] = {WORK_SIZE, INIT_SIZE, 32, 32, 32};
  uint8_t *p[5]; int32_t generate;
  NEED(sized_args(env, argv, 5, p, sizes, names, NULL));
  NEED(arg_int(env, argv[5], &generate, "generate"));
  uint8_t *w = p[0], *msg = p[1], *sk = p[2], *rih = p[3], *out = p[4];
  const uint8_t *eph = msg + INIT_EPH;
  noise_blake2s_raw(w + W_H, 32, NULL, 0, rih, 32, eph, 32, NULL, 0);
  noise_hkdf(w + W_CK, 32, initial_chain_key, eph, 32);
  bool ok = ephemeral(w, generate);
  if (ok) { // es, and our response ephemeral's public key: one batch, one inversion
    uint8_t *outs[2] = {w + W_DH, w + W_EPH_PUB};
    const uint8_t *privs[2] = {sk, w + W_EPH}, *pubs[2] = {eph, NULL};
    bool oks[2];
    ok = x25519_many(outs, privs, pubs, 2, oks);
  }
  if (ok) {
    noise_hkdf(w + W_CK, 64, w + W_CK, w + W_DH, 32);
    ok = chacha_poly(0, out, 32, w + W_T1, ZERO_NONCE, w + W_H, 32, msg + INIT_STATIC, 48);
    mix_hash(w, msg + INIT_STATIC, 48);
    memcpy(w + W_RE, eph, 32);
  }
  OPENSSL_cleanse(w + W_T1, W_RE - W_T1);
  if (!ok) OPENSSL_cleanse(w + W_EPH, WORK_SIZE - W_EPH); // no response will use it
  return ret_int(env, ok ? 1 : 0);
}

// noiseConsumeInitiationTimestamp(work, msg, staticStatic, timestampOut): the second half, with
// DH(our static, the sender's static). 1, or 0 when it does not decrypt.
static napi_value consume_initiation_timestamp(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  static const char *const names[] = {"work", "msg", "staticStatic", "timestampOut"};
  static const size_t sizes[] = {WORK_SIZE, INIT_SIZE, 32, 12};
  uint8_t *p[4];
  NEED(sized_args(env, argv, 4, p, sizes, names, NULL));
  uint8_t *w = p[0], *msg = p[1], *ss = p[2], *out = p[3];
  noise_hkdf(w + W_CK, 64, w + W_CK, ss, 32);
  bool ok = chacha_poly(0, out, 12, w + W_T1, ZERO_NONCE, w + W_H, 32, msg + INIT_TIMESTAMP, 28);
  mix_hash(w, msg + INIT_TIMESTAMP, 28);
  OPENSSL_cleanse(w + W_T1, W_RE - W_T1);
  return ret_int(env, ok ? 1 : 0);
}

// The response's chain from the responder's ephemeral on (both sides): ck over e, ee, se (the
// two shared secrets, computed), then psk. Leaves tau in t1 and the key in t2.
static void response_chain(uint8_t *w, const uint8_t *resp_eph, const uint8_t *ee, const uint8_t *se, const uint8_t *psk) {
  mix_hash(w, resp_eph, 32);
  noise_hkdf(w + W_CK, 32, w + W_CK, resp_eph, 32);
  noise_hkdf(w + W_CK, 32, w + W_CK, ee, 32);
  noise_hkdf(w + W_CK, 32, w + W_CK, se, 32);
  noise_hkdf(w + W_CK, 96, w + W_CK, psk, 32); // ck || tau || key
  mix_hash(w, w + W_T1, 32);
}

// noiseCreateResponse(work, msg, remoteStatic, presharedKey): after a consumed initiation (which
// left our ephemeral key pair in work), fills msg's ephemeral and encrypted nothing. 1, or 0 on an
// unusable key or a work slab without that ephemeral.
static napi_value create_response(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  static const char *const names[] = {"work", "msg", "remoteStatic", "presharedKey"};
  static const size_t sizes[] = {WORK_SIZE, RESP_SIZE, 32, 32};
  uint8_t *p[4];
  NEED(sized_args(env, argv, 4, p, sizes, names, NULL));
  uint8_t *w = p[0], *msg = p[1], *rs = p[2], *psk = p[3];
  uint8_t se[32], any = 0;
  for (int i = 0; i < 32; i++) any |= w[W_EPH_PUB + i];
  bool ok = any != 0;
  if (ok) { // ee and se: one pair of lanes each, one inversion between them
    uint8_t *outs[2] = {w + W_DH, se};
    const uint8_t *privs[2] = {w + W_EPH, w + W_EPH}, *pubs[2] = {w + W_RE, rs};
    bool oks[2];
    ok = x25519_many(outs, privs, pubs, 2, oks);
  }
  if (ok) {
    memcpy(msg + RESP_EPH, w + W_EPH_PUB, 32);
    response_chain(w, w + W_EPH_PUB, w + W_DH, se, psk);
    ok = chacha_poly(1, msg + RESP_EMPTY, 16, w + W_T2, ZERO_NONCE, w + W_H, 32, NULL, 0);
    if (ok) mix_hash(w, msg + RESP_EMPTY, 16);
  }
  OPENSSL_cleanse(se, sizeof se);
  OPENSSL_cleanse(w + W_T1, W_EPH - W_T1); // t1, t2, dh, the remote ephemeral
  return ret_int(env, ok ? 1 : 0);
}

// noiseConsumeResponse(work, msg, localPrivate, presharedKey): authenticates a response to our
// initiation in work. 1 (h and ck advanced), or 0 with work untouched (a forged response must
// leave the pending handshake intact).
static napi_value consume_response(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  static const char *const names[] = {"work", "msg", "localPrivate", "presharedKey"};
  static const size_t sizes[] = {WORK_SIZE, RESP_SIZE, 32, 32};
  uint8_t *p[4];
  NEED(sized_args(env, argv, 4, p, sizes, names, NULL));
  uint8_t *w = p[0], *msg = p[1], *sk = p[2], *psk = p[3];
  uint8_t trial[WORK_SIZE], se[32], empty[1];
  memcpy(trial, w, WORK_SIZE);
  const uint8_t *eph = msg + RESP_EPH;
  uint8_t *outs[2] = {trial + W_DH, se}; // ee and se, one inversion between them
  const uint8_t *privs[2] = {trial + W_EPH, sk}, *pubs[2] = {eph, eph};
  bool oks[2];
  bool ok = x25519_many(outs, privs, pubs, 2, oks);
  if (ok) {
    response_chain(trial, eph, trial + W_DH, se, psk);
    ok = chacha_poly(0, empty, 0, trial + W_T2, ZERO_NONCE, trial + W_H, 32, msg + RESP_EMPTY, 16);
  }
  OPENSSL_cleanse(se, sizeof se);
  if (ok) {
    mix_hash(trial, msg + RESP_EMPTY, 16);
    memcpy(w + W_H, trial + W_H, 64); // h, ck
  }
  OPENSSL_cleanse(trial, sizeof trial);
  return ret_int(env, ok ? 1 : 0);
}

// Once per process (every worker thread registers the addon; the constants are shared).
static void noise_constants(void) {
  static const char construction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
  static const char identifier[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
  noise_blake2s_raw(initial_chain_key, 32, NULL, 0, (const uint8_t *)construction, sizeof construction - 1, NULL, 0, NULL, 0);
  noise_blake2s_raw(initial_hash, 32, NULL, 0, initial_chain_key, 32, (const uint8_t *)identifier, sizeof identifier - 1, NULL, 0);
}

void noise_handshake_register(napi_env env, napi_value exports) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, noise_constants);
  napi_property_descriptor d[] = {
    EXPORT("noiseCreateInitiation", create_initiation),
    EXPORT("noiseConsumeInitiationStatic", consume_initiation_static),
    EXPORT("noiseConsumeInitiationTimestamp", consume_initiation_timestamp),
    EXPORT("noiseCreateResponse", create_response),
    EXPORT("noiseConsumeResponse", consume_response),
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
}
