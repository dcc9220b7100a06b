// A thread that replaces one file atomically (write a temporary file beside it, rename it over the
// old one) while the datapath worker goes on moving packets: the ESP engine's sequence and replay
// marks. A reader, and an agent killed at any moment, sees the old snapshot or the new, never a
// torn one; the rename returns once the new contents are in the kernel's page cache, which outlives
// the agent. No fsync: the marks guard keys derived from this machine's boot id (Cilium's per-tunnel
// keys), and whatever loses the page cache (a kernel crash, a power cut, a reboot) also gives the
// machine a new boot id, so every key a mark guarded is gone with it. The fsyncs cost the writer
// 0.25-0.7 ms of CPU a write on ext4 and the journal's thread more, on the CPUs the packets need.
// Each submission is a complete snapshot of the file and gets the next generation number; a
// snapshot not yet started is replaced by a newer one (the newer holds everything the older did),
// so the thread writes the newest. `ok` is the newest generation written, `done` the newest whose
// write ended (written or failed): the caller counts a snapshot as written once ok >= its
// generation, and as failed once done >= it while ok < it.
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define WRITER_MAGIC 0x76647772u // "vdwr"
#define WRITER_PATH_MAX 4096

typedef struct {
  uint32_t magic;
  pthread_mutex_t mu;
  pthread_cond_t work;      // a snapshot is pending, or stop
  pthread_cond_t ended;     // a write ended
  pthread_t th;
  bool started, stop;
  char path[WRITER_PATH_MAX];
  char tmp[WRITER_PATH_MAX + 64];
  int mode;
  uint8_t *pending; size_t pending_len; // the newest snapshot not yet started (NULL: none); guarded by mu
  int32_t submitted, pending_gen, done, ok, err; // guarded by mu; err: errno of the last failed write
} file_replacer;

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w; n -= (size_t)w;
  }
  return 0;
}

// 0 or an errno. The temporary name is this writer's own (process id and handle address).
static int replace_atomically(file_replacer *w, const uint8_t *p, size_t n) {
  int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, w->mode);
  if (fd < 0) return errno;
  int e = 0;
  if (write_all(fd, p, n) < 0) e = errno;
  if (close(fd) < 0 && !e) e = errno;
  if (!e && rename(w->tmp, w->path) < 0) e = errno;
  if (e) unlink(w->tmp);
  return e;
}

static void *writer_main(void *arg) {
  file_replacer *w = arg;
  prctl(PR_SET_NAME, "veil-writer", 0, 0, 0); // named apart from the thread that started it
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->pending && !w->stop) pthread_cond_wait(&w->work, &w->mu);
    if (!w->pending) break; // stop, and nothing left to write
    uint8_t *p = w->pending; size_t n = w->pending_len; int32_t gen = w->pending_gen;
    w->pending = NULL;
    pthread_mutex_unlock(&w->mu);
    int e = replace_atomically(w, p, n);
    free(p);
    pthread_mutex_lock(&w->mu);
    w->done = gen;
    if (e) w->err = e; else w->ok = gen;
    pthread_cond_broadcast(&w->ended);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

// Stops the thread after it wrote what is pending (a stop loses no snapshot), then frees.
static void writer_close(file_replacer *w) {
  if (w->started) {
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    w->started = false;
  }
}

static void writer_finalize(napi_env env, void *data, void *hint) {
  file_replacer *w = data;
  writer_close(w);
  free(w->pending);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->work);
  pthread_cond_destroy(&w->ended);
  w->magic = 0;
  free(w);
}

static file_replacer *arg_writer(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p || ((file_replacer *)p)->magic != WRITER_MAGIC) {
    napi_throw_type_error(env, NULL, "veil_datapath: writer must be a handle from fileReplacerOpen");
    return NULL;
  }
  return p;
}

// fileReplacerOpen(path, mode) -> handle. Its temporary file goes beside the path (the rename stays in one directory).
napi_value file_replacer_open(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  file_replacer *w = calloc(1, sizeof *w);
  if (!w) { napi_throw_error(env, NULL, "veil_datapath: out of memory"); return NULL; }
  int32_t mode;
  if (!arg_string(env, argv[0], w->path, sizeof w->path, "path") || !arg_int(env, argv[1], &mode, "mode")) { free(w); return NULL; }
  if (w->path[0] == '\0') { free(w); return throw_range(env, "veil_datapath: fileReplacerOpen needs a path"); }
  w->magic = WRITER_MAGIC;
  w->mode = mode;
  char *slash = strrchr(w->path, '/');
  const char *base = slash ? slash + 1 : w->path;
  snprintf(w->tmp, sizeof w->tmp, "%.*s.%s.%d.%p.tmp", (int)(base - w->path), w->path, base, (int)getpid(), (void *)w); // per writer: two in one process never share it
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->work, NULL);
  pthread_cond_init(&w->ended, NULL);
  if (pthread_create(&w->th, NULL, writer_main, w) != 0) { writer_finalize(env, w, NULL); napi_throw_error(env, NULL, "veil_datapath: cannot start the file replacer thread"); return NULL; }
  w->started = true;
  napi_value handle;
  if (napi_create_external(env, w, writer_finalize, NULL, &handle) != napi_ok) {
    writer_finalize(env, w, NULL);
    napi_throw_error(env, NULL, "veil_datapath: fileReplacerOpen cannot create its handle");
    return NULL;
  }
  return handle;
}

// fileReplacerSubmit(handle, bytes) -> generation of this snapshot (the bytes are copied).
napi_value file_replacer_submit(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  file_replacer *w = arg_writer(env, argv[0]);
  uint8_t *p; size_t n;
  if (!w || !arg_bytes(env, argv[1], &p, &n, "bytes")) return NULL;
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy) { napi_throw_error(env, NULL, "veil_datapath: out of memory"); return NULL; }
  memcpy(copy, p, n);
  pthread_mutex_lock(&w->mu);
  if (!w->started || w->stop) { pthread_mutex_unlock(&w->mu); free(copy); return throw_range(env, "veil_datapath: the file replacer is closed"); }
  free(w->pending); // older and not started: this snapshot holds what it held
  w->pending = copy; w->pending_len = n; w->pending_gen = ++w->submitted;
  int32_t gen = w->submitted;
  pthread_cond_signal(&w->work);
  pthread_mutex_unlock(&w->mu);
  return ret_int(env, gen);
}

// fileReplacerState(handle, out Int32Array(3), waitFor) -> 0: out = [ok, done, errno of the last
// failure]. waitFor > 0 blocks until the write of that generation (or a newer one) has ended.
napi_value file_replacer_state(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  file_replacer *w = arg_writer(env, argv[0]);
  int32_t *out; size_t n; int32_t wait_for;
  if (!w || !arg_i32s(env, argv[1], &out, &n, "out") || !arg_int(env, argv[2], &wait_for, "waitFor")) return NULL;
  if (n < 3) return throw_range(env, "veil_datapath: fileReplacerState needs an Int32Array of 3");
  pthread_mutex_lock(&w->mu);
  if (wait_for > w->submitted) wait_for = w->submitted;
  while (w->done < wait_for && w->started) pthread_cond_wait(&w->ended, &w->mu);
  out[0] = w->ok; out[1] = w->done; out[2] = w->err;
  pthread_mutex_unlock(&w->mu);
  return ret_int(env, 0);
}

// fileReplacerClose(handle): writes what is pending, then stops the thread. Later submissions throw.
napi_value file_replacer_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  file_replacer *w = arg_writer(env, argv[0]);
  if (!w) return NULL;
  writer_close(w);
  return ret_int(env, 0);
}
