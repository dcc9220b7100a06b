// Entry of the datapath worker thread: adopt the fds the agent opened, build the engine, loop.
import { parentPort, workerData } from 'node:worker_threads';
import { TunDevice, type TunQueueDescriptor } from './tun-device.js';
import { UdpSocket, type UdpSocketDescriptor } from './udp-socket.js';
import { runWorkerLoop } from './worker-loop.js';
import { setCryptoThreads } from './aead-batch.js';
import type { DatapathEngine } from './engine.js';

interface WorkerInit {
  kind: 'wireguard' | 'esp';
  tun: TunQueueDescriptor;
  udp: UdpSocketDescriptor;
  /** Threads in all, this one included, that share large AEAD batches (1 = this thread alone). */
  cryptoThreads?: number;
  [key: string]: unknown;
}

const init = workerData as WorkerInit;
const tun = TunDevice.adopt(init.tun);
const udp = UdpSocket.adopt(init.udp);
setCryptoThreads(init.cryptoThreads ?? 1);
let engine: DatapathEngine;
if (init.kind === 'wireguard') {
  const { WireguardEngine } = await import('./wireguard-engine.js');
  engine = new WireguardEngine(init as never, tun, udp);
} else {
  const { EspEngine } = await import('./esp-engine.js');
  engine = new EspEngine(init as never, tun, udp);
}
parentPort!.postMessage({ ready: true });
runWorkerLoop(engine, tun, udp, parentPort!);
