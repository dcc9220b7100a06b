// Entry of the datapath worker thread: adopt the fds the agent opened, build the engine, loop.
import { parentPort, workerData } from 'node:worker_threads';
import { TunDevice } from './tun-device.js';
import { adoptUnderlaySocket } from './raw-esp-socket.js';
import { runWorkerLoop } from './worker-loop.js';
import { setCryptoThreads } from './aead-batch.js';
import type { WorkerInit, WorkerMessage } from './messages.js';

const init = workerData as WorkerInit; // DatapathHost passes a WorkerInit as workerData
const tun = TunDevice.adopt(init.tun);
const udp = adoptUnderlaySocket(init.udp);
setCryptoThreads(init.cryptoThreads);
const ready: WorkerMessage = { type: 'ready' };
if (init.kind === 'wireguard') {
  const { WireGuardEngine } = await import('./wireguard-engine.js');
  const engine = new WireGuardEngine(init, tun, udp);
  parentPort!.postMessage(ready);
  runWorkerLoop(engine, tun, udp, parentPort!);
} else {
  const { EspEngine } = await import('./esp-engine.js');
  const engine = new EspEngine(init, tun, udp);
  parentPort!.postMessage(ready);
  runWorkerLoop(engine, tun, udp, parentPort!);
}
