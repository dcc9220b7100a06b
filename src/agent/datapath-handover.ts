// The datapath handover between two agents on one node (a restart, an upgrade), over systemd's fd
// store protocol, which the lab's supervisor speaks too: a stopping agent stores its TUN queue, its
// UDP socket and a memfd holding its datapath's state (datapath-snapshot.ts) with the service
// manager (sd_notify "FDSTORE=1" to $NOTIFY_SOCKET); the next agent gets them as LISTEN_FDS and goes
// on with the same fds, sessions, sequence numbers and replay windows. Meanwhile packets wait in the
// kernel's queues of those fds instead of being dropped, and no handshake is needed afterwards.
// The state is taken once: the next agent empties the memfd before it uses a number from it, so no
// later agent can resume from it (that would send sequence numbers twice: IV reuse).
import { closeSync, fstatSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { native, nativeError } from '../native/addon.js';
import { TunDevice } from '../datapath/tun-device.js';
import { adoptUnderlaySocket } from '../datapath/raw-esp-socket.js';
import type { UdpSocket } from '../datapath/udp-socket.js';
import { decodeSnapshot, encodeSnapshot, type DatapathSnapshot } from '../datapath/datapath-snapshot.js';
import { WORKER_YOUNG_GENERATION_MB } from './agent-heap.js';
import { DatapathHost } from '../datapath/datapath-host.js';
import type { EngineKind, WorkerInit } from '../datapath/messages.js';
import { errorMessage } from '../util/errors.js';

/** The fd store name of the three fds (TUN queue, UDP socket, state), in that order. */
export const HANDOVER_FD_NAME = 'veil-datapath';
/** sd_listen_fds(3): passed fds start here. */
const LISTEN_FDS_START = 3;

export interface AdoptedDatapath {
  tun: TunDevice;
  udp: UdpSocket;
  snapshot: DatapathSnapshot;
}

export type Adoption = { adopted: AdoptedDatapath } | { refused: string } | { none: true };

/** Stores the datapath's fds and state with the service manager at `notifySocket` (then the caller closes its copies). */
export function storeDatapath(notifySocket: string, tun: TunDevice, udp: UdpSocket, snapshot: DatapathSnapshot): void {
  const n = native();
  const memfd = n.memfdCreate('veil-datapath-state');
  if (memfd < 0) throw nativeError(memfd, 'creating the handover memfd');
  try {
    const bytes = encodeSnapshot(snapshot);
    let off = 0;
    while (off < bytes.length) off += writeSync(memfd, bytes, off, bytes.length - off);
    const r = n.sendFds(notifySocket, Buffer.from(`FDSTORE=1\nFDNAME=${HANDOVER_FD_NAME}\n`), Int32Array.of(tun.fd, udp.fd, memfd));
    if (r < 0) throw nativeError(r, `handing the datapath to the service manager at ${notifySocket}`);
  } finally {
    closeSync(memfd);
  }
}

/** Takes the state out of the memfd and empties it (taken once), then closes it. */
function takeState(fd: number): Uint8Array {
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const r = readSync(fd, buf, off, size - off, off);
      if (r <= 0) break;
      off += r;
    }
    ftruncateSync(fd, 0);
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * The datapath a previous agent handed over through LISTEN_FDS (sd_listen_fds), if any: its fds
 * and state, or why it cannot be used (then its fds are closed and the agent starts cold). Removes
 * LISTEN_* from `env` (they were for this process) and tells the service manager the fds are taken.
 */
export function adoptHandedOverDatapath(env: NodeJS.ProcessEnv, notifySocket: string | undefined): Adoption {
  const count = Number(env['LISTEN_FDS'] ?? 0);
  const pid = env['LISTEN_PID'];
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  delete env['LISTEN_FDS'];
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDNAMES'];
  if (!Number.isInteger(count) || count <= 0 || (pid !== undefined && Number(pid) !== process.pid)) return { none: true };
  const fds: number[] = [];
  for (let i = 0; i < count; i++) if (names[i] === HANDOVER_FD_NAME) fds.push(LISTEN_FDS_START + i);
  if (fds.length === 0) return { none: true };
  const n = native();
  if (notifySocket) n.sendFds(notifySocket, Buffer.from(`FDSTOREREMOVE=1\nFDNAME=${HANDOVER_FD_NAME}\n`), new Int32Array(0)); // systemd keeps them otherwise
  const closeAll = () => { for (const fd of fds) n.close(fd); };
  if (fds.length !== 3) {
    closeAll();
    return { refused: `${fds.length} fds named ${HANDOVER_FD_NAME} were handed over, expected 3 (TUN queue, UDP socket, state)` };
  }
  const [tunFd, udpFd, stateFd] = fds as [number, number, number];
  let reading;
  try {
    reading = decodeSnapshot(takeState(stateFd));
  } catch (e) {
    reading = { ok: false as const, reason: `the handed-over state cannot be read: ${(e as Error).message}` };
  }
  if (!reading.ok) {
    n.close(tunFd);
    n.close(udpFd);
    return { refused: reading.reason };
  }
  const s = reading.snapshot;
  const tunName = n.tunName(tunFd), port = s.udp.rawEsp ? s.udp.port : n.udpLocalPort(udpFd); // a raw ESP socket has no port
  if (tunName !== s.tun.name || port !== s.udp.port) {
    n.close(tunFd);
    n.close(udpFd);
    return { refused: `the handed-over fds are not ${s.tun.name} and UDP port ${s.udp.port} (found ${String(tunName)}, port ${port})` };
  }
  return { adopted: { tun: TunDevice.adopt({ fd: tunFd, ...s.tun }), udp: adoptUnderlaySocket({ fd: udpFd, ...s.udp }), snapshot: s } };
}

/** A handed-over datapath running again in this process, before the agent has read its own settings. */
export interface ResumedDatapath extends AdoptedDatapath {
  host: DatapathHost<EngineKind>;
  /** When it moved packets again (Unix ms): the handover's gap is this minus snapshot.exportedAtUnixMs. */
  resumedAtUnixMs: number;
  /** Set by the tunnel that took it over (from then on it stops it); until then the agent does. */
  taken?: boolean;
}

export type Resumption = { resumed: ResumedDatapath } | { refused: string } | { none: true };

/**
 * Takes the datapath the agent before handed over and starts it again at once with what it ran
 * with (the snapshot's engine init): packets move again before this agent even connects to its
 * registry. The agent's tunnel then takes it over (Tunnel.open). A worker that does not start is a
 * refusal: its fds are closed and the agent starts cold.
 */
export async function resumeHandedOverDatapath(env: NodeJS.ProcessEnv, notifySocket: string | undefined): Promise<Resumption> {
  const a = adoptHandedOverDatapath(env, notifySocket);
  if (!('adopted' in a)) return a;
  const { tun, udp, snapshot } = a.adopted;
  // This process's clock: the device clock (performance.now()) starts anew with every process.
  const clock = snapshot.kind === 'wireguard' ? { wallClockOffsetMs: performance.timeOrigin } : {};
  const init = { ...snapshot.engine, ...clock, tun: tun.describe(), udp: udp.describe(), resume: { state: snapshot.state, exportedAtUnixMs: snapshot.exportedAtUnixMs } } as WorkerInit;
  let fatal: Error | undefined;
  const host = new DatapathHost<EngineKind>(init as Extract<WorkerInit, { kind: EngineKind }>, (e) => { fatal = e; }, WORKER_YOUNG_GENERATION_MB); // the snapshot's engine kind and its init
  try {
    await host.whenReady();
  } catch (e) {
    await host.stop().catch(() => undefined);
    tun.close();
    udp.close();
    return { refused: `the handed-over datapath did not start: ${errorMessage(fatal ?? e)}` };
  }
  return { resumed: { ...a.adopted, host, resumedAtUnixMs: Date.now() } };
}

/** Stops a resumed datapath nothing took over (a start that failed first): a clean stop, fds closed. */
export async function stopResumed(r: ResumedDatapath | undefined): Promise<void> {
  if (!r || r.taken) return;
  r.taken = true;
  await r.host.stop().catch(() => undefined);
  r.tun.close();
  r.udp.close();
}

/** Why an adopted datapath cannot serve a tunnel of this kind, device, address and port (undefined: it can). */
export function handoverMismatch(a: AdoptedDatapath, kind: string, device: string, address: string, port: number, rawEsp: boolean): string | undefined {
  const s = a.snapshot;
  if (s.kind !== kind) return `the handed-over datapath runs ${s.kind}, this agent ${kind}`;
  if (s.tun.name !== device) return `the handed-over TUN device is ${s.tun.name}, this agent uses ${device}`;
  if (!!s.udp.rawEsp !== rawEsp) return `the handed-over socket ${s.udp.rawEsp ? 'is raw ESP' : 'is UDP'}, this agent uses ${rawEsp ? 'raw ESP' : 'ESP in UDP'}`;
  if (s.udp.address !== address || s.udp.port !== port) return `the handed-over UDP socket is ${s.udp.address}:${s.udp.port}, this agent uses ${address}:${port}`;
  return undefined;
}
