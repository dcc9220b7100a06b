// The datapath worker's scheduling class (setting datapath.realtime): SCHED_FIFO on the first CPU
// it may use while it moves little, SCHED_OTHER at its nice (datapath.priority) on all of them while
// it is busy or does other work.
//
// Why: a lone packet's latency is mostly wake-ups. Under EEVDF a woken worker, even at nice -10,
// waits behind a nice-0 thread that still has time left (the agent's main thread, etcd, another
// process: idle ping p99 2-4x wireguard-go's on a loaded machine, in whole 4 ms ticks). A realtime
// thread preempts every normal thread at once; where it runs, see toRealtime(). Busy, a realtime
// worker would starve the pods, the agent and the kernel's threads (the RT throttle is a last
// resort), so it drops back as soon as it works much or wakes often, and rises again only after a
// quiet spell. Control requests and heap compactions (up to 180 ms) are not packets: they run
// SCHED_OTHER (setAside()), and the worker rises again right after them.
// Syscalls only at those transitions; the per-turn cost is a few subtractions.
import { decodeNativeError, native } from '../native/addon.js';

/** SCHED_FIFO priority: the lowest, above every normal thread, below the kernel's own RT threads. */
const RT_PRIORITY = 1;
/** Work (time between a wait's return and the next wait) is summed over windows this long. */
export const WINDOW_MS = 10;
/** A window busier than this share of its time is load: the worker drops to SCHED_OTHER. */
export const BUSY_SHARE = 0.25;
/**
 * A window with more wake-ups than this per WINDOW_MS (2,000 a second) is a flow, not lone packets: each wake-up
 * of a realtime thread preempts whatever ran there, and a flow gains more from batching than from
 * the wake-up's latency. Idle pings wake it 1-2 times a window.
 */
export const BUSY_WAKEUPS = 20;
/** One stretch of work this long without a wait (a big burst) drops it at once. */
export const LONG_WORK_MS = 2;
/** Back to SCHED_FIFO once no window was busy for this long. */
export const QUIET_MS = 500;

/** Puts the calling thread on SCHED_FIFO (true) or SCHED_OTHER (false); whether the kernel allowed it. */
export type PolicySwitch = (realtime: boolean) => boolean;

/** Lets the threads of the calling thread's priority that wait for its CPU run first (sched_yield). */
export type Yield = () => void;

const nativeYield: Yield = () => { native().threadYield(); };

/**
 * SCHED_FIFO on the first CPU the thread may use (0, or the refusal), and back: SCHED_OTHER on all
 * of them. The RT scheduler wakes a realtime thread on its last CPU unless an RT thread of its
 * priority or above runs there; then on an idle one. So it never migrates (session 17) and sits on
 * whichever CPU it happened to be on, and in the lab, where both nodes' workers share two vCPUs,
 * one worker woken by the other was sent to the other vCPU: a ping's four wake-ups (ping, worker,
 * worker, ping) all crossed vCPUs, each an IPI to a halted vCPU (this VM does not poll when idle),
 * 35-37 µs from wake-up to running where CFS took ~12 (perf trace, docs/performance-log.md, session
 * 19): idle p50 +15-18 %. Pinned to the same CPU on every node they stay together, each woken
 * behind the other's tail, and idle p50 is back at CFS's (the lab A/B, same log). On a real node, whose peer is another host, it only
 * chooses the one CPU the worker stays on anyway. A busy RT thread of priority >= 1 on that CPU
 * would hold it up (left to the scheduler it would have gone elsewhere); the affinity needs no
 * capability, and a refused one leaves it where it is.
 */
function toRealtime(): number {
  const rc = native().threadSetRealtime(RT_PRIORITY);
  if (rc === 0) native().threadPinFirstCpu(true);
  return rc;
}

const nativeSwitch: PolicySwitch = (realtime) => {
  if (realtime) return toRealtime() === 0;
  native().threadPinFirstCpu(false);
  return native().threadSetRealtime(0) === 0;
};

export class IdleRealtime {
  /** SCHED_FIFO by the traffic rules (the thread is SCHED_FIFO when this holds and it is not aside). */
  private realtime: boolean;
  /** Set aside (SCHED_OTHER) for control work until the next wait. */
  private aside = false;
  /** Whether the time since `woke` is packet work (false once control work began). */
  private counting = true;
  private windowStart: number;
  private worked = 0;
  private wakeups = 0;
  private woke: number;
  private lastBusy = -Infinity;

  /** enabled false: the thread is never touched (SCHED_OTHER as started). realtime: it already runs SCHED_FIFO. */
  constructor(private readonly enabled: boolean, now: number, realtime: boolean, private readonly setPolicy: PolicySwitch = nativeSwitch,
    private readonly yieldCpu: Yield = nativeYield) {
    this.windowStart = now;
    this.woke = now;
    this.realtime = enabled && realtime;
  }

  /**
   * The calling thread's policy, starting realtime (it starts idle) when enabled. Returns the
   * errno name when the kernel refused (no CAP_SYS_NICE): the policy then stays off.
   */
  static start(enabled: boolean, now: number): { policy: IdleRealtime; refused?: string } {
    if (!enabled) return { policy: new IdleRealtime(false, now, false) };
    const rc = toRealtime();
    if (rc < 0) return { policy: new IdleRealtime(false, now, false), refused: decodeNativeError(rc).name };
    return { policy: new IdleRealtime(true, now, true) };
  }

  /** Whether the thread runs SCHED_FIFO now. */
  get isRealtime(): boolean {
    return this.realtime && !this.aside;
  }

  /**
   * Before work that is not packets (a control request, a heap compaction check): the work so far
   * was packets; what follows, until the next wait, runs SCHED_OTHER and does not count as load.
   */
  setAside(now: number): void {
    if (!this.enabled || !this.counting) return;
    this.worked += now - this.woke;
    this.counting = false;
    if (this.realtime && !this.aside && this.setPolicy(false)) this.aside = true;
  }

  /**
   * Before work a turn's packets do not wait for (ESP's replay-mark refill, timers), after the turn
   * sent packets: a realtime thread those packets woke on this CPU runs first. Same-priority FIFO
   * threads do not preempt each other, and every node's worker is pinned to the same first CPU
   * (toRealtime), so in a lab the peer's worker, woken by the answer just sent, waited for that
   * work (a refill ~100 µs) before it could take the answer. SCHED_OTHER: nothing (a yield there
   * would give up the thread's share to normal threads).
   */
  yieldToWoken(): void {
    if (this.isRealtime) this.yieldCpu();
  }

  /** Before the worker waits: the packet work since it woke counts. The only place it rises. */
  beforeWait(now: number): void {
    if (!this.enabled) return;
    const stretch = this.counting ? now - this.woke : 0;
    this.worked += stretch;
    const span = now - this.windowStart;
    let busy = false, closed = false;
    if (span >= WINDOW_MS || stretch >= LONG_WORK_MS) {
      closed = true;
      busy = stretch >= LONG_WORK_MS || this.worked > BUSY_SHARE * span || this.wakeups * WINDOW_MS > BUSY_WAKEUPS * span;
      if (busy) this.lastBusy = now;
      this.windowStart = now;
      this.worked = 0;
      this.wakeups = 0;
    }
    if (busy) {
      if (this.realtime && !this.aside) this.setPolicy(false); // SCHED_OTHER is always allowed
      this.realtime = this.aside = false;
    } else if (this.aside || (closed && !this.realtime && now - this.lastBusy >= QUIET_MS)) {
      // Control work done, or a quiet spell: SCHED_FIFO (a refusal, the capability dropped since
      // the start, leaves it SCHED_OTHER until the next quiet spell).
      this.realtime = this.setPolicy(true);
      this.aside = false;
      if (!this.realtime) this.lastBusy = now;
    }
  }

  /** After the wait returned. */
  afterWait(now: number): void {
    this.woke = now;
    this.counting = true;
    this.wakeups++;
  }
}
