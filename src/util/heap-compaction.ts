// A thread's V8 heap given back once a burst is over. A burst of peer work (convergence, a relist,
// a whole pass, the worker's peer table) promotes its short-lived objects to the old generation,
// and V8's own full collections free those objects but keep the pages they were on, partly empty,
// with an allocation limit set from the burst's size: at 5,000 peers the agent's two heaps held
// ~73 MB around ~47 MB of live objects, at 1,000 peers ~37 around ~30, so the slack grew with the
// cluster and showed as memory per peer. Once the heap has grown well past its size after the last
// compaction and the thread is quiet, one full collection that moves every live object together
// gives the emptied pages back (at 5,000 peers ~70-150 ms on the main thread, 30-180 ms in the
// datapath worker; a few times while a cluster grows, not in the steady state). What the compaction
// freed off the V8 heap then goes back to the kernel too, at the next quiet check (the caller's
// giveBack: src/native/malloc-trim.ts's returnFreedMalloc; util does not reach the addon itself).
// The decisions are pure (CompactionPolicy); the collection itself is heap-figures.ts's.
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { fullCollection, reportCompactionPending } from './heap-figures.js';

/** How far the heap may grow past its size after the last compaction before the next one. */
export interface CompactionThresholds {
  /** Growth as a factor of that size... */
  growth: number;
  /** ...and at least this many bytes (small heaps grow and shrink by a few MB in normal work). */
  minGrowthBytes: number;
  /** Heap size is checked at most this often (ms). */
  checkIntervalMs: number;
  /**
   * Checks in a row the thread must have been quiet at. V8 shrinks a young generation that a burst
   * grew (to its cap: ~4 MB a thread, ~1.6 KB per peer of the 1,000 → 5,000 slope) only in a full
   * collection that finds the allocation rate of the last 5 s low, so the compaction waits that long.
   */
  quietChecks: number;
}

/**
 * growth 1.1: a heap that settles above its compacted size (the steady state's own collections
 * leave partly empty pages) is compacted once it holds 4 MB more (10 % in a heap above 40 MB), not
 * 25 %: at 5,000 peers the main thread held 34-37 MB around 28-30 MB live for whole steady windows
 * under 1.25, the slack growing with the cluster and showing in the RSS slope by peer.
 */
export const DEFAULT_COMPACTION: CompactionThresholds = { growth: 1.1, minGrowthBytes: 4 << 20, checkIntervalMs: 2_000, quietChecks: 3 };

/**
 * When to compact: at a check (every checkIntervalMs) where the thread has been quiet for
 * quietChecks checks in a row (no burst under way: compacting in the middle of one would only free
 * pages it fills again) and its heap (the pages V8 holds) has grown past the size after the last compaction by the thresholds.
 */
export class CompactionPolicy {
  private floorBytes: number;
  private nextCheckMs: number;
  private quietInARow = 0;
  private freedSinceTrim = false;

  constructor(heapBytes: number, nowMs: number, private readonly thresholds: CompactionThresholds = DEFAULT_COMPACTION) {
    this.floorBytes = heapBytes;
    this.nextCheckMs = nowMs + thresholds.checkIntervalMs;
  }

  /** Whether a check is due at nowMs (the caller then reads the heap and asks `due`). */
  checkDue(nowMs: number): boolean {
    return nowMs >= this.nextCheckMs;
  }

  /** At a check: whether to compact a heap of heapBytes now; quiet: nothing busy since the check before. */
  due(nowMs: number, heapBytes: number, quiet: boolean): boolean {
    this.nextCheckMs = nowMs + this.thresholds.checkIntervalMs;
    this.quietInARow = quiet ? this.quietInARow + 1 : 0;
    return this.quietInARow >= this.thresholds.quietChecks && this.grown(heapBytes);
  }

  /** Whether a heap of heapBytes has grown past the thresholds (it is compacted at the next quiet check). */
  grown(heapBytes: number): boolean {
    return heapBytes > Math.max(this.floorBytes * this.thresholds.growth, this.floorBytes + this.thresholds.minGrowthBytes);
  }

  /** After a compaction: the heap's size then is what growth is measured from. */
  compacted(heapBytes: number): void {
    this.floorBytes = heapBytes;
    this.freedSinceTrim = true;
  }

  /**
   * At a check that does not compact: whether to give back what the last compaction freed off the V8
   * heap now. Once per compaction, at the first quiet check after it, not right after it: V8 frees
   * dead ArrayBuffers' memory on a helper thread after the collection (a trim right after one gave
   * back 0-30 of 63 freed MB in-process, one 200 ms later all of it); and a quiet one, since the
   * trim holds the thread for a few ms.
   */
  trimDue(quiet: boolean): boolean {
    if (!quiet || !this.freedSinceTrim) return false;
    this.freedSinceTrim = false;
    return true;
  }

  /** The heap's size after the last compaction (or at the start). */
  get floor(): number {
    return this.floorBytes;
  }
}

/** The pages this thread's V8 heap holds. */
export function heapHeldBytes(): number {
  return getHeapStatistics().total_heap_size;
}

/**
 * This thread's heap compacted when the policy says so: call `check(nowMs, quiet)` often (a timer,
 * a loop); it reads the heap only every checkIntervalMs. Returns whether it compacted. At the
 * first quiet check after a compaction, giveBack runs (the agent's: src/native/malloc-trim.ts returnFreedMalloc).
 */
export class HeapCompactor {
  readonly policy: CompactionPolicy;
  /** Compactions this compactor ran (the thread's totals, with their time, are in heapFigures()). */
  count = 0;

  constructor(nowMs: number, private readonly giveBack: () => void, thresholds: CompactionThresholds = DEFAULT_COMPACTION) {
    // The floor is what the heap's objects take now, not the pages it holds: a thread's start (code
    // compiled, the first pass) leaves its heap holding ~5-7 MB above that, and from a floor of what
    // it held a heap that stays under it + minGrowthBytes (an agent of up to ~1,000 peers) was never
    // compacted and kept that slack for good (docs/performance-log.md, session 22, mem22).
    this.policy = new CompactionPolicy(getHeapStatistics().used_heap_size, nowMs, thresholds);
    reportCompactionPending(() => this.policy.grown(heapHeldBytes()));
  }

  checkDue(nowMs: number): boolean {
    return this.policy.checkDue(nowMs);
  }

  /** beforeCompaction: runs right before a compaction only (a check alone takes microseconds). */
  check(nowMs: number, quiet: boolean, beforeCompaction?: () => void): boolean {
    if (!this.policy.checkDue(nowMs)) return false;
    if (!this.policy.due(nowMs, heapHeldBytes(), quiet)) {
      if (this.policy.trimDue(quiet)) this.giveBack();
      return false;
    }
    beforeCompaction?.();
    fullCollection(true);
    this.count++;
    this.policy.compacted(heapHeldBytes());
    return true;
  }
}

/**
 * The datapath worker is quiet when no control request arrived and it moved fewer packets than
 * this per second since the check before: a compaction holds packets for its whole pause, so it
 * waits for a tunnel that carries little (health probes, a ping), never a flow under way, which
 * would feel it as a stall (V8's own collections keep a busy heap in bounds meanwhile).
 */
export const QUIET_PACKETS_PER_SECOND = 2_000;

/** Whether the datapath worker was quiet over elapsedMs, in which it answered controlRequests and moved packets. */
export function datapathQuiet(controlRequests: number, packets: number, elapsedMs: number): boolean {
  return controlRequests === 0 && packets * 1000 < QUIET_PACKETS_PER_SECOND * Math.max(elapsedMs, 1);
}

/** A thread with an event loop is quiet when it was busy less than this share of the time since the check before. */
export const QUIET_LOOP_UTILIZATION = 0.05;

/**
 * For a thread with an event loop (the agent's main thread): a timer that checks every
 * checkIntervalMs, quiet meaning the loop's utilization over the interval stayed under
 * QUIET_LOOP_UTILIZATION. Unref'd: it never keeps the process alive. Stop it with clearInterval.
 */
export function compactWhenQuiet(onCompacted: (c: HeapCompactor) => void, giveBack: () => void, thresholds: CompactionThresholds = DEFAULT_COMPACTION): NodeJS.Timeout {
  const compactor = new HeapCompactor(performance.now(), giveBack, thresholds);
  let since = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const quiet = performance.eventLoopUtilization(since).utilization < QUIET_LOOP_UTILIZATION;
    if (compactor.check(performance.now(), quiet)) onCompacted(compactor);
    since = performance.eventLoopUtilization(); // after the compaction: its own time is not the next interval's work
  }, thresholds.checkIntervalMs);
  timer.unref();
  return timer;
}
