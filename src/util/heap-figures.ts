// One thread's V8 heap, as numbers: what the agent's /memory answers for its main thread and its
// datapath worker. With `collect`, a full garbage collection runs first, so `usedBytes` is the
// live heap (what the state costs) rather than live heap plus garbage not yet collected.
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { performance } from 'node:perf_hooks';

/** A thread's heap (bytes); after a full collection when `collected`. */
export interface HeapFigures {
  collected: boolean;
  /** Objects on the V8 heap (live ones only when collected). */
  usedBytes: number;
  /** The pages V8 holds for its heap (what it costs in resident memory, at most). */
  totalBytes: number;
  /** Of totalBytes, the young generation's (new space): it grows under bursts of short-lived objects. */
  youngBytes: number;
  /** Memory outside the heap that V8 knows of: ArrayBuffers' backing stores, the isolate's own allocations. */
  externalBytes: number;
  mallocedBytes: number;
  /** Compacting collections this thread ran since it started (heap-compaction.ts), and their time (ms). */
  compactions: number;
  compactionMs: number;
  /**
   * The heap has grown past its compaction threshold: a compaction runs once the thread is quiet
   * (heap-compaction.ts). A burst's aftermath still to come; the scale bench waits for it to pass
   * before it measures the steady state. Absent where the thread runs no compactor.
   */
  compactionPending?: boolean;
  /** Each space's pages held and objects on them, and its resident pages (bytes; where the slack above the live heap is). */
  spaces?: Record<string, { size: number; used: number; physical: number }>;
}

let collectGarbage: (() => void) | undefined;
const compactions = { count: 0, ms: 0 };
/** This thread's compactor, if it runs one: whether a compaction is due once the thread is quiet. */
let compactionPending: (() => boolean) | undefined;

/** Called by this thread's compactor (heap-compaction.ts): heapFigures() then reports whether a compaction is pending. */
export function reportCompactionPending(pending: () => boolean): void {
  compactionPending = pending;
}

/**
 * A full collection of this thread's heap, through the isolate's gc(): exposed once (the flag is
 * process-wide), taken from a fresh context, which then has it. compact: every page's live objects
 * moved together, so the emptied pages go back to the system (heap-compaction.ts). V8 11's gc()
 * takes no option for that (`{type: 'major'}` ran a young collection), so the flag V8 reads at the
 * start of each full collection is set around this one; a full collection that another thread
 * starts in that instant compacts too, which costs it time, not correctness.
 */
export function fullCollection(compact = false): void {
  if (!collectGarbage) {
    setFlagsFromString('--expose-gc');
    collectGarbage = runInNewContext('gc') as () => void;
  }
  if (!compact) return collectGarbage();
  const start = performance.now();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    collectGarbage();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
    compactions.count++;
    compactions.ms += performance.now() - start;
  }
}

export function heapFigures(collect: boolean): HeapFigures {
  if (collect) fullCollection();
  const h = getHeapStatistics();
  const spaces = getHeapSpaceStatistics();
  return {
    collected: collect, usedBytes: h.used_heap_size, totalBytes: h.total_heap_size,
    youngBytes: spaces.find((s) => s.space_name === 'new_space')?.space_size ?? 0,
    externalBytes: h.external_memory, mallocedBytes: h.malloced_memory,
    compactions: compactions.count, compactionMs: Math.round(compactions.ms),
    ...(compactionPending && { compactionPending: compactionPending() }),
    spaces: Object.fromEntries(spaces.map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size }])),
  };
}
