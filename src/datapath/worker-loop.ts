// The datapath worker's loop: wait for the TUN, the UDP socket or the host's wake-up eventfd, let
// the engine move batches, run timers, answer control requests. It blocks in poll(2), so control
// messages are read synchronously (receiveMessageOnPort) between waits; the host signals the
// eventfd after each request, so an idle worker sleeps until a packet, a timer or a request.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { native } from '../native/addon.js';
import type { DatapathEngine } from './engine.js';
import type { ControlEnvelope, EspProtocol, HandoverRequest, MemoryRequest, RequestOf, StopRequest, WireGuardProtocol, WorkerMessage } from './messages.js';
import { heapFigures } from '../util/heap-figures.js';
import { DEFAULT_COMPACTION, HeapCompactor, datapathQuiet } from '../util/heap-compaction.js';
import { returnFreedMalloc } from '../native/malloc-trim.js';
import type { TunDevice } from './tun-device.js';
import type { UdpSocket } from './udp-socket.js';
import { isVeilError, errorMessage } from '../util/errors.js';
import type { IdleRealtime } from './idle-realtime.js';

/**
 * Longest a wait may block. Requests wake the worker through the eventfd; timers are the engine's
 * nextDeadline(), which the WireGuard engine rounds up to its TIMER_SLACK_MS grid (WireGuard's
 * timers are seconds: REKEY_TIMEOUT 5 s, keepalives 10 s). Was 20 ms, the port's only chance to be seen:
 * 50 wake-ups a second on an idle node (~0.5 % of a core here, issue #13's steady state).
 */
const MAX_WAIT_MS = 250;
/**
 * Batches per readiness before looking at the other fd (fairness between directions). A batch
 * that found its queue empty ends the burst: another read would be a wasted syscall, and with
 * sparse traffic (a ping, a lone ACK) every microsecond of a wake-up is latency.
 */
const BURST = 8;
/** The worker's first turns, in which every rare branch of turn() runs (see WorkerLoop.warmTurns). */
const WARM_TURNS = 64;

export function runWorkerLoop<P extends WireGuardProtocol | EspProtocol>(engine: DatapathEngine<P>, tun: TunDevice, udp: UdpSocket, port: MessagePort, wakeFd: number, sched: IdleRealtime): void {
  // One wait and what it woke for per call: a function called again and again is optimized by
  // TurboFan as a whole. The loop's body inline in a function entered once ran on on-stack
  // replacement, and its frame was baseline code in 57 % of the workers' samples on lone pings
  // (README Performance).
  const loop = new WorkerLoop(engine, tun, udp, port, wakeFd, sched);
  while (loop.turn()) { /* until a stop or a handover */ }
}

class WorkerLoop<P extends WireGuardProtocol | EspProtocol> {
  private readonly fds: Int32Array;
  private readonly n = native();
  private running = true;
  // The peer table's updates are the bursts here (heap-compaction.ts); packets allocate little. A
  // compaction holds packets for its time (30-180 ms at 5,000 peers), once after such a burst, and
  // only while the tunnel carries little (datapathQuiet).
  private readonly compactor = new HeapCompactor(performance.now() - DEFAULT_COMPACTION.checkIntervalMs, returnFreedMalloc);
  // In the first WARM_TURNS turns the rare branches of turn() run whether due or not: the compaction
  // check (it reads the heap only when due), draining the wake-up eventfd (non-blocking) and the
  // engine's timers (they act only when due). TurboFan compiles turn() after some hundreds of
  // turns, and a branch that had not run since V8 gave turn() its feedback vector (after about 8
  // turns) was compiled as a deoptimization: the first control request, compaction check or timer
  // after the compilation threw turn() back to baseline code until it was compiled again, seconds
  // later on a lone-ping flow (lab --trace-deopt: sessions 16, 24 and 25). One turn was not enough
  // (a check at turn 16 or 64 still deoptimized in the lab): every one of these turns runs them.
  private warmTurns = WARM_TURNS;
  private requests = 0;
  private moved = 0;
  private intervalStart = performance.now();

  /** Made once: a closure per check would allocate. */
  private readonly asideForCompaction = (): void => this.sched.setAside(performance.now());

  constructor(private readonly engine: DatapathEngine<P>, private readonly tun: TunDevice, private readonly udp: UdpSocket, private readonly port: MessagePort, private readonly wakeFd: number, private readonly sched: IdleRealtime) {
    this.fds = Int32Array.of(tun.fd, udp.fd, wakeFd);
  }

  /** Answers waiting control requests, waits for packets and moves them; false once stopped. */
  turn(): boolean {
    const engine = this.engine, tun = this.tun, udp = this.udp;
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) break;
      this.sched.setAside(performance.now()); // control work runs SCHED_OTHER (datapath.realtime)
      this.control(m.message as ControlEnvelope<RequestOf<P>>); // DatapathHost<kind of this engine> sent it
    }
    if (!this.running) return false;
    let now = performance.now();
    const warm = this.warmTurns > 0;
    if (warm) this.warmTurns--;
    if (warm || this.compactor.checkDue(now)) {
      // A compaction (30-180 ms) runs SCHED_OTHER; the check alone (every 2 s) stays realtime: set
      // aside for every check, the worker dropped to SCHED_OTHER right after a packet, and on a
      // loaded machine waited there behind other threads for ms while the answer to that packet
      // arrived (idle ping p99 ~2 ms, README Performance).
      this.compactor.check(now, datapathQuiet(this.requests, this.moved, now - this.intervalStart), this.asideForCompaction); // and malloc's arenas trimmed at the next quiet check
      this.requests = 0;
      this.moved = 0;
      this.intervalStart = performance.now();
    }
    const wait = Math.max(0, Math.min(MAX_WAIT_MS, Math.ceil(engine.nextDeadline(now) - now)));
    this.sched.beforeWait(now);
    const polled = this.n.waitReadable(this.fds, 3, wait);
    const ready = polled > 0 ? polled : 0; // bit i: fds[i] readable (an error is negative)
    // A request came: drained here, read from the port at the next turn's start (right away).
    // (Drained also while warm: a request is on the port before its signal, so none is missed.)
    if ((ready & 4) !== 0 || warm) this.n.wakeFdDrain(this.wakeFd);
    now = performance.now();
    this.sched.afterWait(now);
    let moved = 0;
    if (ready & 2) {
      for (let i = 0; i < BURST; i++) {
        const got = engine.fromNetwork(now);
        moved += got;
        if (got === 0 || udp.drained) break;
      }
    }
    // The TUN when it is readable, and also after the network's packets: what the TUN writes
    // delivered is often answered before the write returns (a ping's echo reply, a TCP ACK: the
    // kernel runs the pod's side in the writer's softirq), so the answer is queued now: read it in
    // this wake-up instead of after another poll (once per wake-up, as when the poll had said so,
    // so the directions keep their fair shares). One syscall fewer between a packet and its answer
    // is one preemption point fewer: idle RTT p99 fell in every lab A/B pair (README Performance).
    // One call site for both, which every node runs from its first packet on: the answering node
    // otherwise reached its own (ready & 1) branch first only after TurboFan had compiled turn()
    // without feedback for it, and deoptimized there (lab --trace-deopt, session 16).
    if ((ready & 1) !== 0 || moved > 0) moved += tunnelBurst(engine, tun, now);
    this.moved += moved;
    if (warm || engine.nextDeadline(now) <= now) {
      // The tick's work (ESP's replay-mark refill: a write of the marks file handed to its thread)
      // is no packet's: after a turn that sent packets, the realtime thread they woke goes first.
      // (Also in the warm turns: its call is compiled with feedback, no deoptimization at the first.)
      if (warm || moved > 0) this.sched.yieldToWoken();
      engine.tick(now); // the turn's clock: no second read
    }
    return true;
  }

  private control(env: ControlEnvelope<RequestOf<P>>): void {
    if (isHandover(env.request)) {
      // No packet moves after this: the state answered is final, the next datapath goes on from it.
      this.running = false;
      this.port.postMessage(handOver(this.engine, env.id));
      return;
    }
    if (isMemory(env.request)) {
      this.port.postMessage({ type: 'reply', id: env.id, ok: true, value: heapFigures(env.request.collect) } satisfies WorkerMessage);
      return;
    }
    if (isStop(env.request)) {
      // Close before answering: the host terminates this thread as soon as the answer arrives,
      // and close() is what writes the exact replay tops of a clean stop.
      this.running = false;
      this.engine.close();
    }
    this.requests++;
    this.port.postMessage(answer(this.engine, env));
  }
}

/** Up to BURST batches from the TUN, until one finds the queue empty; the packets moved. */
function tunnelBurst<P extends WireGuardProtocol | EspProtocol>(engine: DatapathEngine<P>, tun: TunDevice, now: number): number {
  let moved = 0;
  for (let i = 0; i < BURST; i++) {
    const got = engine.fromTunnel(now);
    moved += got;
    if (got === 0 || tun.drained) break;
  }
  return moved;
}

function isStop(request: { type: string }): request is StopRequest {
  return request.type === 'stop';
}

function isMemory(request: { type: string }): request is MemoryRequest {
  return request.type === 'memory';
}

function isHandover(request: { type: string }): request is HandoverRequest {
  return request.type === 'handover';
}

/** The engine's state, then a clean close (ESP's exact replay tops on disk: a fallback cold start loses nothing either). */
function handOver<P extends WireGuardProtocol | EspProtocol>(engine: DatapathEngine<P>, id: number): WorkerMessage {
  try {
    const value = { state: engine.exportState(performance.now()), exportedAtUnixMs: Date.now() };
    engine.close();
    return { type: 'reply', id, ok: true, value };
  } catch (e) {
    engine.close();
    return { type: 'reply', id, ok: false, error: { code: 'DATAPATH_HANDOVER', message: errorMessage(e) } };
  }
}

function answer<P extends WireGuardProtocol | EspProtocol>(engine: DatapathEngine<P>, env: ControlEnvelope<RequestOf<P>>): WorkerMessage {
  const request = env.request as RequestOf<P> | StopRequest; // handover and memory requests never come here
  try {
    return { type: 'reply', id: env.id, ok: true, value: isStop(request) ? null : engine.control(request) };
  } catch (e) {
    return {
      type: 'reply', id: env.id, ok: false,
      error: isVeilError(e) ? { code: e.code, message: e.message, hint: e.hint } : { code: 'DATAPATH', message: errorMessage(e) },
    };
  }
}
