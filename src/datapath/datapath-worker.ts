// Entry of the datapath worker thread: adopt the fds the agent opened, build the engine, loop.
import { parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { TunDevice } from './tun-device.js';
import { adoptUnderlaySocket } from './raw-esp-socket.js';
import { runWorkerLoop } from './worker-loop.js';
import { IdleRealtime } from './idle-realtime.js';
import { setCryptoThreads } from './aead-batch.js';
import { decodeNativeError, native } from '../native/addon.js';
import { performance } from 'node:perf_hooks';
import type { DatapathEngine } from './engine.js';
import type { EspProtocol, WireGuardProtocol, WorkerData, WorkerMessage } from './messages.js';

/** Bytes of bytecode run per tier-up tick (V8's --interrupt-budget; its default is 67584). */
const TIER_UP_BUDGET_BYTES = 4096;

// A lone packet (a ping, a request) runs the datapath's TypeScript a few hundred times a second.
// With V8's default tier-up budget (66 KB of bytecode per tick) the packet path then stays in
// baseline code, every property load through an inline-cache stub, for the first thousands of
// packets after a start (in the lab: idle ping p50 ~480-510 µs cold, ~380 µs once optimized). A
// 4 KB budget has TurboFan take it within the first few hundred packets (~390 µs cold). The flag
// is process-wide (V8 has none per isolate): the agent's own code also optimizes sooner.
setFlagsFromString(`--interrupt-budget=${TIER_UP_BUDGET_BYTES}`);

const init = workerData as WorkerData; // DatapathHost passes its init and wake-up fd as workerData
// Its own name (top -H, /proc's comm, the latency bench's threads): pthreads gave it the agent's.
native().threadSetName('veil-datapath');
const tun = TunDevice.adopt(init.tun);
const udp = adoptUnderlaySocket(init.udp);
setCryptoThreads(init.cryptoThreads);
// Raised where the agent may (CAP_SYS_NICE): a refusal is reported with 'ready', the loop runs anyway.
const nice = init.priority === 0 ? 0 : native().threadSetNice(init.priority);
// SCHED_FIFO while idle (datapath.realtime), once the engine's threads (crypto helpers, the marks
// writer) have started at the worker's nice: a thread started while realtime starts normal.
function run<P extends WireGuardProtocol | EspProtocol>(engine: DatapathEngine<P>): void {
  const sched = IdleRealtime.start(init.realtime, performance.now());
  parentPort!.postMessage({
    type: 'ready',
    ...(nice < 0 && { priorityRefused: decodeNativeError(nice).name }),
    ...(sched.refused && { realtimeRefused: sched.refused }),
  } satisfies WorkerMessage);
  runWorkerLoop(engine, tun, udp, parentPort!, init.wakeFd, sched.policy);
}
if (init.kind === 'wireguard') {
  const { WireGuardEngine } = await import('./wireguard-engine.js');
  run(new WireGuardEngine(init, tun, udp));
} else {
  const { EspEngine } = await import('./esp-engine.js');
  run(new EspEngine(init, tun, udp));
}
