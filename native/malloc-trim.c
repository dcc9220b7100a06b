// Freed malloc'd memory given back to the kernel once a burst is over. glibc keeps what a thread
// freed in that thread's arena (the datapath worker's, V8's helper threads') and returns only the
// free space at an arena's top; a burst of peer work (messages, their key chunks, V8's own
// malloc'd bookkeeping) leaves freed holes between live blocks, which stayed resident after the
// burst and grew with the cluster (~1-2 KB per peer of the agent's RSS slope). malloc_trim(0)
// releases the free pages of every arena (MADV_DONTNEED), the blocks stay where they are.
#include "common.h"
#include <malloc.h>

// mallocTrim() -> 1 when memory was given back, else 0.
napi_value malloc_trim_all(napi_env env, napi_callback_info info) {
  return ret_int(env, malloc_trim(0));
}

// mallocMmapThreshold(bytes) -> 1 when glibc took it, else 0. Blocks of at least bytes are mapped
// on their own and unmapped when freed. glibc's default threshold (128 KB) rises to the size of each
// mapped block freed, up to 32 MB, and its trim threshold with it: after the agent's first large
// messages (a whole ESP table to the worker, a relist's answer) such blocks came from the arenas, and
// what they freed stayed resident until the next trim (20 s; the scale bench's steady window reads
// it). Set, the threshold stays fixed: glibc's MALLOC_MMAP_THRESHOLD_, from inside the process.
napi_value malloc_mmap_threshold(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t bytes;
  if (!arg_int(env, argv[0], &bytes, "bytes")) return NULL;
  if (bytes <= 0) return throw_range(env, "mallocMmapThreshold: bytes must be positive");
  return ret_int(env, mallopt(M_MMAP_THRESHOLD, bytes));
}
