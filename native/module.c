// Module registration, per-thread state and argument checking for the veil datapath addon.
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void state_finalize(napi_env env, void *data, void *hint) {
  veil_state *st = data;
  aead_free_all(st);
  free(st);
}

veil_state *veil_get_state(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

napi_value ret_int(napi_env env, int64_t x) {
  napi_value r;
  napi_create_int64(env, x, &r);
  return r;
}

napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}

static bool type_error(napi_env env, const char *what, const char *expected) {
  char msg[160];
  snprintf(msg, sizeof msg, "veil_datapath: %s must be %s", what, expected);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

bool arg_int(napi_env env, napi_value v, int32_t *out, const char *what) {
  if (napi_get_value_int32(env, v, out) != napi_ok) return type_error(env, what, "a number");
  return true;
}

static bool arg_typed(napi_env env, napi_value v, napi_typedarray_type want, void **p, size_t *len,
                      const char *what, const char *expected) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  if (!is) return type_error(env, what, expected);
  napi_typedarray_type t;
  size_t n;
  if (napi_get_typedarray_info(env, v, &t, &n, p, NULL, NULL) != napi_ok || t != want)
    return type_error(env, what, expected);
  if (len) *len = n;
  return true;
}

bool arg_bytes(napi_env env, napi_value v, uint8_t **p, size_t *len, const char *what) {
  return arg_typed(env, v, napi_uint8_array, (void **)p, len, what, "a Buffer or Uint8Array");
}
bool arg_i32s(napi_env env, napi_value v, int32_t **p, size_t *len, const char *what) {
  return arg_typed(env, v, napi_int32_array, (void **)p, len, what, "an Int32Array");
}
bool arg_u16s(napi_env env, napi_value v, uint16_t **p, size_t *len, const char *what) {
  return arg_typed(env, v, napi_uint16_array, (void **)p, len, what, "a Uint16Array");
}
bool arg_f64s(napi_env env, napi_value v, double **p, size_t *len, const char *what) {
  return arg_typed(env, v, napi_float64_array, (void **)p, len, what, "a Float64Array");
}

bool arg_string(napi_env env, napi_value v, char *out, size_t cap, const char *what) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, out, cap, &n) != napi_ok) return type_error(env, what, "a string");
  if (n >= cap - 1) return type_error(env, what, "a shorter string");
  return true;
}

void noise_crypto_register(napi_env env, napi_value exports); // noise-crypto.c

static napi_value init(napi_env env, napi_value exports) {
  veil_state *st = calloc(1, sizeof *st);
  if (!st || napi_set_instance_data(env, st, state_finalize, NULL) != napi_ok) {
    free(st);
    napi_throw_error(env, NULL, "veil_datapath: out of memory");
    return NULL;
  }
  napi_property_descriptor d[] = {
    EXPORT("batchBind", batch_bind),
    EXPORT("threadSetNice", thread_set_nice),
    EXPORT("threadSetName", thread_set_name),
    EXPORT("threadSetRealtime", thread_set_realtime),
    EXPORT("threadPinFirstCpu", thread_pin_first_cpu),
    EXPORT("threadYield", thread_yield),
    EXPORT("tunOpen", tun_open),
    EXPORT("tunSetOffload", tun_set_offload),
    EXPORT("tunName", tun_name),
    EXPORT("tunReadBatch", tun_read_batch),
    EXPORT("tunWriteBatch", tun_write_batch),
    EXPORT("close", fd_close),
    EXPORT("waitReadable", wait_readable),
    EXPORT("udpOpen", udp_open),
    EXPORT("udpSetGro", udp_set_gro),
    EXPORT("udpSetBuffers", udp_set_buffers),
    EXPORT("udpLocalPort", udp_local_port),
    EXPORT("udpRecvBatch", udp_recv_batch),
    EXPORT("udpSendBatch", udp_send_batch),
    EXPORT("udpSend", udp_send),
    EXPORT("udpSetRecvStamps", udp_set_recv_stamps),
    EXPORT("udpRecvStamped", udp_recv_stamped),
    EXPORT("rawOpen", raw_open),
    EXPORT("aeadCreate", aead_create),
    EXPORT("aeadFree", aead_free),
    EXPORT("sealBatch", aead_seal_batch),
    EXPORT("openBatch", aead_open_batch),
    EXPORT("aeadSetThreads", aead_set_threads),
    EXPORT("aeadPoolBatches", aead_pool_batches),
    EXPORT("checksum", checksum),
    EXPORT("unixDgramBind", unix_dgram_bind),
    EXPORT("sendFds", send_fds),
    EXPORT("recvFds", recv_fds),
    EXPORT("memfdCreate", memfd_create_fd),
    EXPORT("wakeFdOpen", wake_fd_open),
    EXPORT("wakeFdSignal", wake_fd_signal),
    EXPORT("wakeFdDrain", wake_fd_drain),
    EXPORT("mallocTrim", malloc_trim_all),
    EXPORT("mallocMmapThreshold", malloc_mmap_threshold),
    EXPORT("routeChangesOpen", route_changes_open),
    EXPORT("routeChangesDrain", route_changes_drain),
    EXPORT("routesWrite", routes_write),
    EXPORT("mallocInfo", malloc_info_xml),
    EXPORT("fileReplacerOpen", file_replacer_open),
    EXPORT("fileReplacerSubmit", file_replacer_submit),
    EXPORT("fileReplacerState", file_replacer_state),
    EXPORT("fileReplacerClose", file_replacer_close),
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  noise_crypto_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
