// Freed malloc'd memory given back to the kernel (native/malloc-trim.c), for the heap compactor's
// giveBack (src/util/heap-compaction.ts) on the agent's main thread and the datapath worker.
import { native } from './addon.js';

/**
 * Freed malloc'd memory given back to the kernel: the free pages of every thread's arena, between
 * live blocks too (native/malloc-trim.c). A compaction frees what the burst's dead objects held off
 * the V8 heap (ArrayBuffers' backing stores, V8's own malloc'd tables), and glibc keeps it resident;
 * the agent's 20-s trim timer gave it back up to 20 s later, inside the scale bench's steady window.
 * A trim takes 2-3 ms at 5,000 peers and runs once per compaction. Whether any memory went back.
 */
export function returnFreedMalloc(): boolean {
  return native().mallocTrim() === 1;
}

/**
 * glibc's own default (128 KB), fixed: a block that large is mapped on its own and goes back to the
 * kernel when freed, not into an arena where it stays resident until the next trim.
 */
export const MALLOC_MMAP_THRESHOLD_BYTES = 128 << 10;

/**
 * Large blocks mapped on their own for good (native/malloc-trim.c's mallocMmapThreshold): the
 * messages of a burst (a whole ESP table to the worker, a relist) give their memory back when freed.
 * Process-wide; the agent sets it once at its start. Whether glibc took it.
 */
export function mapLargeMallocBlocks(): boolean {
  return native().mallocMmapThreshold(MALLOC_MMAP_THRESHOLD_BYTES) === 1;
}
