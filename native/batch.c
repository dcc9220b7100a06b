// A PacketBatch's buffers registered once (batchBind), so that every batch I/O call passes one
// handle and a count instead of five to seven typed arrays: each typed-array argument costs N-API
// checks on every call, and a lone packet pays them on cold caches at every hop.
#include "common.h"
#include <stdio.h>
#include <stdlib.h>

#define BATCH_ARRAYS 6
#define BATCH_MAGIC 0x76626174u // "vbat": a handle of this kind, not another external

struct veil_batch_ref { uint32_t magic; veil_batch b; napi_ref refs[BATCH_ARRAYS]; };

static void batch_finalize(napi_env env, void *data, void *hint) {
  struct veil_batch_ref *r = data;
  for (int i = 0; i < BATCH_ARRAYS; i++) if (r->refs[i]) napi_delete_reference(env, r->refs[i]);
  free(r);
}

// batchBind(buf, slotSize, headroom, tailroom, slots, offs, lens, addrs, families, ports) -> handle.
// The handle keeps the arrays alive (strong references) until it is itself collected; their memory
// never moves (off-heap backing stores), so the pointers taken here stay valid.
napi_value batch_bind(napi_env env, napi_callback_info info) {
  GET_ARGS(10);
  struct veil_batch_ref *r = calloc(1, sizeof *r);
  if (!r) { napi_throw_error(env, NULL, "veil_datapath: out of memory"); return NULL; }
  r->magic = BATCH_MAGIC;
  veil_batch *b = &r->b;
  size_t no, nl, na, nf, np;
  bool ok = arg_bytes(env, argv[0], &b->buf, &b->blen, "buf") && arg_int(env, argv[1], &b->slot, "slotSize") &&
    arg_int(env, argv[2], &b->head, "headroom") && arg_int(env, argv[3], &b->tail, "tailroom") &&
    arg_int(env, argv[4], &b->slots, "slots") && arg_i32s(env, argv[5], &b->offs, &no, "offs") &&
    arg_i32s(env, argv[6], &b->lens, &nl, "lens") && arg_bytes(env, argv[7], &b->addrs, &na, "addrs") &&
    arg_bytes(env, argv[8], &b->fams, &nf, "families") && arg_u16s(env, argv[9], &b->ports, &np, "ports");
  if (!ok) { free(r); return NULL; }
  size_t cap = no < nl ? no : nl;
  if (na / 16 < cap) cap = na / 16;
  if (nf < cap) cap = nf;
  if (np < cap) cap = np;
  if (b->slot <= 0 || b->head < 0 || b->tail < 0 || (int64_t)b->head + b->tail >= b->slot || b->slots <= 0 ||
      (size_t)b->slots * (size_t)b->slot > b->blen || cap == 0 || cap > INT32_MAX) {
    free(r);
    return throw_range(env, "veil_datapath: batchBind layout does not fit the buffers");
  }
  b->cap = (int32_t)cap;
  napi_value handle;
  for (int i = 0; i < BATCH_ARRAYS; i++) {
    napi_value v = argv[i == 0 ? 0 : i + 4];
    if (napi_create_reference(env, v, 1, &r->refs[i]) != napi_ok) { batch_finalize(env, r, NULL); napi_throw_error(env, NULL, "veil_datapath: batchBind cannot hold its arrays"); return NULL; }
  }
  if (napi_create_external(env, r, batch_finalize, NULL, &handle) != napi_ok) {
    batch_finalize(env, r, NULL);
    napi_throw_error(env, NULL, "veil_datapath: batchBind cannot create its handle");
    return NULL;
  }
  return handle;
}

bool arg_batch(napi_env env, napi_value v, veil_batch **out, const char *what) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p || ((struct veil_batch_ref *)p)->magic != BATCH_MAGIC) {
    char msg[120];
    snprintf(msg, sizeof msg, "veil_datapath: %s must be a batch handle (batchBind)", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *out = &((struct veil_batch_ref *)p)->b;
  return true;
}
