// The datapath worker's scheduling class (setting datapath.realtime): SCHED_FIFO while it moves
// little, SCHED_OTHER at its nice (datapath.priority) while it is busy.
//
// Why: a lone packet's latency is mostly wake-ups. Under EEVDF a woken worker, even at nice -10,
// waits behind a nice-0 thread that still has time left (the agent's main thread, etcd: idle ping
// p99 2-4x wireguard-go's), and a socket wake-up is a sync wake-up, so CFS puts the woken worker on
// its waker's CPU, behind the waker's tail. A realtime thread preempts every normal thread at once,
// and the RT scheduler wakes it on a CPU where it can run at once (its last CPU, else the lowest-
// priority one). Busy, a realtime worker would starve the pods, the agent and the kernel's threads
// (the RT throttle is a last resort), so it drops back as soon as it works much, and rises again
// only after a quiet spell. Syscalls only at those transitions; the per-turn cost is a subtraction.
import { decodeNativeError, native } from '../native/addon.js';

/** SCHED_FIFO priority: the lowest, above every normal thread, below the kernel's own RT threads. */
const RT_PRIORITY = 1;
/** Work (time between a wait's return and the next wait) is summed over windows this long. */
const WINDOW_MS = 10;
/** A window busier than this share of its time is load: the worker drops to SCHED_OTHER. */
const BUSY_SHARE = 0.25;
/** One stretch of work this long without a wait (a big burst, a long control request) drops it at once. */
const LONG_WORK_MS = 2;
/** Back to SCHED_FIFO once no window was busy for this long. */
const QUIET_MS = 500;

export class IdleRealtime {
  private realtime = false;
  private windowStart: number;
  private worked = 0;
  private woke: number;
  private lastBusy = -Infinity;
  private readonly n = native();

  /** enabled false: the thread is never touched (SCHED_OTHER as started). */
  private constructor(private readonly enabled: boolean, now: number) {
    this.windowStart = now;
    this.woke = now;
  }

  /**
   * The calling thread's policy, starting realtime (it starts idle) when enabled. Returns the
   * errno name when the kernel refused (no CAP_SYS_NICE): the policy then stays off.
   */
  static start(enabled: boolean, now: number): { policy: IdleRealtime; refused?: string } {
    if (!enabled) return { policy: new IdleRealtime(false, now) };
    const rc = native().threadSetRealtime(RT_PRIORITY);
    if (rc < 0) return { policy: new IdleRealtime(false, now), refused: decodeNativeError(rc).name };
    const policy = new IdleRealtime(true, now);
    policy.realtime = true;
    return { policy };
  }

  /** Whether the thread runs SCHED_FIFO now. */
  get isRealtime(): boolean {
    return this.realtime;
  }

  /** Before the worker waits: the time since it woke was work. The only place it switches. */
  beforeWait(now: number): void {
    if (!this.enabled) return;
    const stretch = now - this.woke;
    this.worked += stretch;
    const span = now - this.windowStart;
    if (span < WINDOW_MS && stretch < LONG_WORK_MS) return;
    if (stretch >= LONG_WORK_MS || this.worked > BUSY_SHARE * span) {
      this.lastBusy = now;
      if (this.realtime) this.set(false);
    } else if (!this.realtime && now - this.lastBusy >= QUIET_MS) {
      this.set(true);
    }
    this.windowStart = now;
    this.worked = 0;
  }

  /** After the wait returned. */
  afterWait(now: number): void {
    this.woke = now;
  }

  private set(realtime: boolean): void {
    // A refusal now (the capability dropped since the start) leaves the thread as it is: it was
    // allowed before, and SCHED_OTHER is always allowed, so only a rise can fail; stay normal then.
    if (this.n.threadSetRealtime(realtime ? RT_PRIORITY : 0) === 0) this.realtime = realtime;
  }
}
