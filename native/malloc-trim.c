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
