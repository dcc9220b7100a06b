// What malloc holds, arena by arena, for the agent's /memory: glibc's malloc_info(3) report (XML),
// read in JS (src/native/malloc-stats.ts). RSS by mapping shows that the threads' arenas grow with
// the cluster; this says whether with live blocks (native state per peer) or with free ones (holes
// a burst left, which a trim gives back), and in which arena.
#include "common.h"
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

// mallocInfo() -> malloc_info(0) as a string ('' if it failed).
napi_value malloc_info_xml(napi_env env, napi_callback_info info) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f) {
    if (malloc_info(0, f) != 0) len = 0;
    fclose(f);
  }
  napi_value r;
  napi_create_string_utf8(env, text ? text : "", text ? len : 0, &r);
  free(text);
  return r;
}
