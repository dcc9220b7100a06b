// The agent's side of the datapath worker: starts it, sends it control requests, stops it.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { VeilError } from '../util/errors.js';
import type { ControlEnvelope, EngineKind, EngineResume, EngineStateOf, HandoverRequest, MemoryRequest, ProtocolOf, ReplyTo, RequestOf, StopRequest, WorkerData, WorkerInit, WorkerMessage } from './messages.js';
import { check, native } from '../native/addon.js';
import type { HeapFigures } from '../util/heap-figures.js';

const WORKER_JS = join(dirname(fileURLToPath(import.meta.url)), 'datapath-worker.js');

/** A worker running the engine of kind K; request() answers with that engine's reply type. */
export class DatapathHost<K extends EngineKind> {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  private readonly ready: Promise<void>;
  /** Signalled after each request: the worker, blocked in poll(2), sees its port only when woken. */
  private readonly wakeFd: number;

  /**
   * Starts the worker; `init` is its workerData (engine kind, fds, keys). `onFatal` may be replaced
   * later (a datapath resumed before the agent took it). `youngGenerationMb` caps the worker's V8
   * young generation (absent: V8's own size).
   */
  constructor(readonly init: Extract<WorkerInit, { kind: K }>, public onFatal: (e: Error) => void, youngGenerationMb?: number) {
    this.wakeFd = check(native().wakeFdOpen(), 'opening the datapath worker\'s wake-up eventfd');
    const workerData: WorkerData = { ...init, wakeFd: this.wakeFd };
    this.worker = new Worker(WORKER_JS, { workerData, name: 'veil-datapath', ...(youngGenerationMb && { resourceLimits: { maxYoungGenerationSizeMb: youngGenerationMb } }) });
    let readyResolve: () => void = () => undefined;
    let readyReject: (e: Error) => void = () => undefined;
    this.ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej; });
    this.worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') { this.priorityRefused = m.priorityRefused; this.realtimeRefused = m.realtimeRefused; readyResolve(); return; }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new VeilError(m.error.code, m.error.message, m.error.hint));
    });
    this.worker.on('error', (e) => { readyReject(e); this.onFatal(e); });
    this.worker.on('exit', (code) => {
      this.exited = true;
      native().close(this.wakeFd);
      const err = new VeilError('DATAPATH_EXITED', `the datapath worker exited (code ${code})`);
      readyReject(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  /** Why the worker runs at the default priority instead of init.priority (an errno name), if it does. */
  priorityRefused: string | undefined;
  /** Why the worker never runs SCHED_FIFO though init.realtime asked for it (an errno name), if so. */
  realtimeRefused: string | undefined;

  /** Resolves once the worker has set up its engine. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  request<R extends RequestOf<ProtocolOf[K]>>(request: R, timeoutMs = 5000): Promise<ReplyTo<ProtocolOf[K], R>> {
    return this.send(request, timeoutMs) as Promise<ReplyTo<ProtocolOf[K], R>>; // the engine's control() answers R with this type
  }

  private send(request: RequestOf<ProtocolOf[K]> | StopRequest | HandoverRequest | MemoryRequest, timeoutMs: number): Promise<unknown> {
    if (this.exited) return Promise.reject(new VeilError('DATAPATH_EXITED', 'the datapath worker is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VeilError('DATAPATH_TIMEOUT', `the datapath did not answer '${request.type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      const envelope: ControlEnvelope<RequestOf<ProtocolOf[K]>> = { id, request };
      this.worker.postMessage(envelope);
      native().wakeFdSignal(this.wakeFd); // after the post: the woken worker finds it on its port
    });
  }

  /** The worker thread's heap, after a full collection there if `collect`. */
  memory(collect: boolean): Promise<HeapFigures> {
    return this.send({ type: 'memory', collect }, 10_000) as Promise<HeapFigures>; // the loop answers 'memory' with this
  }

  /**
   * Stops the worker for a handover: it stops moving packets and answers with the engine's state,
   * from which the next datapath (another agent) goes on with the same fds. Rejects when the worker
   * could not answer (it is then terminated, as by stop()).
   */
  async handover(): Promise<EngineResume<EngineStateOf[K]>> {
    try {
      return await this.send({ type: 'handover' }, 2000) as EngineResume<EngineStateOf[K]>; // the loop answers 'handover' with this
    } finally {
      await this.worker.terminate();
    }
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    await this.send({ type: 'stop' }, 2000).catch(() => undefined);
    await this.worker.terminate();
  }
}
