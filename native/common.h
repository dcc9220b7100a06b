// Shared declarations of the veil datapath addon. The addon does syscalls and bulk crypto only;
// every protocol decision stays in TypeScript. Packets are (offset, length) descriptors into one
// preallocated Buffer, and every function handles a whole batch per JS->C crossing.
#ifndef VEIL_COMMON_H
#define VEIL_COMMON_H
#define _GNU_SOURCE
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

// Failures are returned as negative numbers: -(stage << 12 | errno). The TS wrapper turns them into
// VeilErrors naming the step that failed (see ERROR_STAGES in src/datapath/native.ts).
enum veil_stage {
  STAGE_NONE = 0,
  STAGE_TUN_OPEN = 1,      // open("/dev/net/tun")
  STAGE_TUN_SETIFF = 2,    // ioctl(TUNSETIFF)
  STAGE_TUN_PERSIST = 3,   // ioctl(TUNSETPERSIST)
  STAGE_TUN_OFFLOAD = 4,   // ioctl(TUNSETOFFLOAD)
  STAGE_UDP_SOCKET = 5,    // socket()
  STAGE_UDP_BIND = 6,      // bind()
  STAGE_UDP_ADDR = 7,      // address does not parse
  STAGE_UDP_GRO = 8,       // setsockopt(UDP_GRO)
  STAGE_IO = 9,            // read/write/send/recv/poll
  STAGE_ARG = 10,          // bad argument (bounds, handle)
};
#define VEIL_ERR(stage, e) (-(int64_t)(((stage) << 12) | ((e) & 0xfff)))

#define MAX_MSGS 256        // per recvmmsg/sendmmsg call
#define MAX_GSO_SEGS 64     // UDP_SEGMENT limit on older kernels
#define VNET_HDR_LEN 10     // struct virtio_net_hdr

// Per-thread (per napi_env) state: AEAD context table and syscall scratch, so worker threads never share.
struct aead_ctx;
struct aead_shared;
typedef struct {
  struct aead_ctx **ctxs;
  struct aead_shared *shared; // ChaCha20-Poly1305's cipher contexts, one a thread and way (aead.c)
  struct crypto_pool *pool; // crypto threads helping this worker with large batches (NULL: none)
  double pool_batches;      // batches shared with the pool so far
  int32_t nctx, cap;
  struct mmsghdr msgs[MAX_MSGS];
  struct iovec iov[MAX_MSGS * 2];
  struct sockaddr_storage names[MAX_MSGS];
  char ctl[MAX_MSGS][64];
} veil_state;
veil_state *veil_get_state(napi_env env);
void aead_free_all(veil_state *st);

// A PacketBatch's buffers, registered once by batchBind (batch.c): slot i starts at i * slot, its
// packet at + head with tail bytes kept free; cap descriptors (offs, lens, 16-byte addrs, fams, ports).
typedef struct {
  uint8_t *buf; size_t blen;
  int32_t slot, head, tail, slots, cap;
  int32_t *offs, *lens;
  uint8_t *addrs, *fams;
  uint16_t *ports;
} veil_batch;

// Argument helpers: each throws a TypeError naming the argument and returns false on mismatch.
bool arg_int(napi_env env, napi_value v, int32_t *out, const char *what);
bool arg_bytes(napi_env env, napi_value v, uint8_t **p, size_t *len, const char *what);
bool arg_i32s(napi_env env, napi_value v, int32_t **p, size_t *len, const char *what);
bool arg_u16s(napi_env env, napi_value v, uint16_t **p, size_t *len, const char *what);
bool arg_f64s(napi_env env, napi_value v, double **p, size_t *len, const char *what);
bool arg_string(napi_env env, napi_value v, char *out, size_t cap, const char *what);
bool arg_batch(napi_env env, napi_value v, veil_batch **out, const char *what); // batch.c
napi_value ret_int(napi_env env, int64_t x);
napi_value throw_range(napi_env env, const char *msg);

// One entry of a napi_define_properties table: the JS name and its C function.
#define EXPORT(js, c) { js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL }

#define GET_ARGS(N)                                                                 \
  size_t argc = (N);                                                                \
  napi_value argv[(N) > 0 ? (N) : 1];                                               \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < (N)) { \
    napi_throw_type_error(env, NULL, "veil_datapath: expected " #N " arguments");   \
    return NULL;                                                                    \
  }
#define NEED(x) do { if (!(x)) return NULL; } while (0)

// Internet checksum (RFC 1071). csum_add returns a running sum in network byte order (not folded);
// csum_fold folds it to 16 bits without inverting.
uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t n);
uint16_t csum_fold(uint64_t sum);
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

// Exported functions, one group per file.
napi_value batch_bind(napi_env env, napi_callback_info info); // batch.c
napi_value thread_set_nice(napi_env env, napi_callback_info info); // thread-priority.c
napi_value thread_set_name(napi_env env, napi_callback_info info); // thread-priority.c
napi_value thread_set_realtime(napi_env env, napi_callback_info info); // thread-priority.c
napi_value thread_pin_first_cpu(napi_env env, napi_callback_info info); // thread-priority.c
napi_value thread_yield(napi_env env, napi_callback_info info); // thread-priority.c
napi_value tun_open(napi_env env, napi_callback_info info);
napi_value tun_set_offload(napi_env env, napi_callback_info info);
napi_value tun_name(napi_env env, napi_callback_info info);
napi_value tun_read_batch(napi_env env, napi_callback_info info);
napi_value tun_write_batch(napi_env env, napi_callback_info info);
napi_value fd_close(napi_env env, napi_callback_info info);
napi_value wait_readable(napi_env env, napi_callback_info info);
napi_value unix_dgram_bind(napi_env env, napi_callback_info info); // fdpass.c
napi_value send_fds(napi_env env, napi_callback_info info);
napi_value recv_fds(napi_env env, napi_callback_info info);
napi_value memfd_create_fd(napi_env env, napi_callback_info info);
napi_value udp_open(napi_env env, napi_callback_info info);
napi_value udp_set_gro(napi_env env, napi_callback_info info);
napi_value udp_set_buffers(napi_env env, napi_callback_info info);
napi_value udp_local_port(napi_env env, napi_callback_info info);
napi_value udp_recv_batch(napi_env env, napi_callback_info info);
napi_value udp_send_batch(napi_env env, napi_callback_info info);
napi_value udp_send(napi_env env, napi_callback_info info);
napi_value udp_set_recv_stamps(napi_env env, napi_callback_info info);
napi_value udp_recv_stamped(napi_env env, napi_callback_info info);
napi_value raw_open(napi_env env, napi_callback_info info);
napi_value aead_create(napi_env env, napi_callback_info info);
napi_value aead_free(napi_env env, napi_callback_info info);
napi_value aead_seal_batch(napi_env env, napi_callback_info info);
napi_value aead_set_threads(napi_env env, napi_callback_info info);
napi_value aead_pool_batches(napi_env env, napi_callback_info info);
napi_value aead_open_batch(napi_env env, napi_callback_info info);
napi_value checksum(napi_env env, napi_callback_info info);
napi_value wake_fd_open(napi_env env, napi_callback_info info); // wake-fd.c
napi_value wake_fd_signal(napi_env env, napi_callback_info info);
napi_value wake_fd_drain(napi_env env, napi_callback_info info);
napi_value malloc_trim_all(napi_env env, napi_callback_info info); // malloc-trim.c
napi_value malloc_mmap_threshold(napi_env env, napi_callback_info info);
napi_value route_changes_open(napi_env env, napi_callback_info info);  // route-changes.c
napi_value route_changes_drain(napi_env env, napi_callback_info info);
napi_value routes_write(napi_env env, napi_callback_info info);  // route-steer.c
napi_value malloc_info_xml(napi_env env, napi_callback_info info); // malloc-stats.c
napi_value file_replacer_open(napi_env env, napi_callback_info info); // file-replacer.c
napi_value file_replacer_submit(napi_env env, napi_callback_info info);
napi_value file_replacer_state(napi_env env, napi_callback_info info);
napi_value file_replacer_close(napi_env env, napi_callback_info info);
#endif
