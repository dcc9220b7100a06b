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
 * 1 MB, fixed: a block that large is mapped on its own and goes back to the kernel when freed, and
 * glibc's trim threshold stays at its default. glibc's own 128 KB, fixed, cost the steady state:
 * V8's helper threads' blocks of 128 KB-1 MB became an mmap, page faults and an munmap each cycle
 * (steady CPU at 5,000 peers 1.29-1.72x in the scale bench); with 1 MB the threads' arenas held
 * 4.6-5.2 MB resident against 7.8-8.4, and the steady CPU was as without it (four pairs;
 * docs/performance-log.md, session 25).
 */
export const MALLOC_MMAP_THRESHOLD_BYTES = 1 << 20;

/**
 * Large blocks mapped on their own for good (native/malloc-trim.c's mallocMmapThreshold): the
 * messages of a burst (a whole ESP table to the worker, a relist) give their memory back when freed.
 * Process-wide; the agent sets it once at its start. Whether glibc took it.
 */
export function mapLargeMallocBlocks(): boolean {
  return native().mallocMmapThreshold(MALLOC_MMAP_THRESHOLD_BYTES) === 1;
}
