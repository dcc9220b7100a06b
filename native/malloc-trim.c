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
// mapped block freed, up to 32 MB, and its trim threshold (what an arena's top may keep free) with
// it: in the agent the threads' arenas then kept 7-9 MB free, 8-10 MB resident around ~3 MB of live
// blocks, the amount moving between runs. Set, both stay fixed (glibc's MALLOC_MMAP_THRESHOLD_, from
// inside the process): the arenas kept ~3.5 MB free (docs/performance-log.md, session 25).
napi_value malloc_mmap_threshold(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t bytes;
  if (!arg_int(env, argv[0], &bytes, "bytes")) return NULL;
  if (bytes <= 0) return throw_range(env, "mallocMmapThreshold: bytes must be positive");
  return ret_int(env, mallopt(M_MMAP_THRESHOLD, bytes));
}
