// The datapath handover's document: what a stopping agent hands the next one besides its TUN queue
// and UDP socket (the engine kind, what the fds are, the engine's state). Versioned: a build that
// cannot read it (another version, a damaged or foreign file) refuses it with the reason, and the
// agent then starts cold, as without a handover. Keys travel in it (session keys, SA keys), so it
// only ever lives in memory (a memfd in the supervisor's fd store), never in a file on disk.
import type { EngineKind, EngineStateOf, WorkerInit } from './messages.js';
import type { TunQueueDescriptor } from './tun-device.js';
import type { UdpSocketDescriptor } from './udp-socket.js';

/**
 * Bumped whenever the document or an engine's state changes shape: an older reader then refuses it.
 * Not for an optional field an older reader may safely go without (WireGuard's lingering keypairs,
 * receive-only): the upgrade across it keeps its handover.
 */
export const DATAPATH_SNAPSHOT_VERSION = 2;
const FORMAT = 'veil-datapath-handover';

export interface DatapathSnapshot<K extends EngineKind = EngineKind> {
  format: typeof FORMAT;
  version: number;
  kind: K;
  /** When the old datapath stopped (Unix ms). */
  exportedAtUnixMs: number;
  /** The fds handed over with it: what they are (their numbers differ in the next process). */
  tun: Omit<TunQueueDescriptor, 'fd'>;
  udp: Omit<UdpSocketDescriptor, 'fd'>;
  /** What the old datapath was started with (keys, MTU...): the next agent starts it again at once, before it reads its own settings. */
  engine: EngineInitOf<K>;
  state: EngineStateOf[K];
}

/** A worker's init without its fds and resume state. */
export type EngineInitOf<K extends EngineKind> = Omit<Extract<WorkerInit, { kind: K }>, 'tun' | 'udp' | 'resume'>;

export function makeSnapshot<K extends EngineKind>(init: Extract<WorkerInit, { kind: K }>, resume: { state: EngineStateOf[K]; exportedAtUnixMs: number }): DatapathSnapshot<K> {
  const { tun, udp, resume: _r, ...engine } = init;
  const { fd: _t, ...tunRest } = tun;
  const { fd: _u, ...udpRest } = udp;
  return {
    format: FORMAT, version: DATAPATH_SNAPSHOT_VERSION, kind: init.kind as K, exportedAtUnixMs: resume.exportedAtUnixMs, tun: tunRest, udp: udpRest,
    engine: engine as EngineInitOf<K>, state: resume.state, // init without exactly the omitted fields
  };
}

/**
 * Whether two engine inits start the same engine: ESP's marks aside (the engine keeps its own,
 * newer), and the clock offset (each process has its own; the resumed engine took this one's).
 */
export function sameEngineInit(a: EngineInitOf<EngineKind>, b: EngineInitOf<EngineKind>): boolean {
  const strip = (x: EngineInitOf<EngineKind>) => ({ ...x, marks: undefined, wallClockOffsetMs: undefined });
  return Buffer.from(encodeJson(strip(a))).equals(Buffer.from(encodeJson(strip(b))));
}

const BYTES = '$bytes';

/** JSON, with byte arrays (keys) as base64. */
export function encodeSnapshot(s: DatapathSnapshot): Uint8Array {
  return encodeJson(s);
}

function encodeJson(s: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(s, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return { [BYTES]: Buffer.from(v).toString('base64') };
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return { [BYTES]: Buffer.from((v as { data: number[] }).data).toString('base64') }; // a Buffer's toJSON ran first
    }
    return v;
  }), 'utf8');
}

export type SnapshotReading = { ok: true; snapshot: DatapathSnapshot } | { ok: false; reason: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The snapshot in `bytes`, or why this build does not take it. */
export function decodeSnapshot(bytes: Uint8Array): SnapshotReading {
  if (bytes.length === 0) return { ok: false, reason: 'the handed-over state is empty (already taken by an agent before this one)' };
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'), (_k, x: unknown) =>
      isObject(x) && typeof x[BYTES] === 'string' && Object.keys(x).length === 1 ? new Uint8Array(Buffer.from(x[BYTES], 'base64')) : x);
  } catch (e) {
    return { ok: false, reason: `the handed-over state is not JSON (${(e as Error).message})` };
  }
  if (!isObject(v) || v['format'] !== FORMAT) return { ok: false, reason: 'the handed-over state is not a veil datapath handover' };
  if (v['version'] !== DATAPATH_SNAPSHOT_VERSION) {
    return { ok: false, reason: `the handed-over state has version ${String(v['version'])}, this build reads version ${DATAPATH_SNAPSHOT_VERSION}` };
  }
  const tun = v['tun'], udp = v['udp'], state = v['state'], engine = v['engine'];
  if ((v['kind'] !== 'wireguard' && v['kind'] !== 'esp') || typeof v['exportedAtUnixMs'] !== 'number' || !isObject(tun) || typeof tun['name'] !== 'string' ||
    !isObject(engine) || engine['kind'] !== v['kind'] || typeof engine['mtu'] !== 'number' ||
    !isObject(udp) || typeof udp['port'] !== 'number' || typeof udp['address'] !== 'string' || !isObject(state) || !Array.isArray(state['peers'])) {
    return { ok: false, reason: 'the handed-over state is incomplete' };
  }
  const live = v['kind'] === 'wireguard' ? isObject(state['sessions']) && Array.isArray(state['sessions']['peers']) : Array.isArray(state['sas']);
  if (!live) return { ok: false, reason: `the handed-over ${v['kind']} state has no ${v['kind'] === 'wireguard' ? 'sessions' : 'SAs'}` };
  return { ok: true, snapshot: v as unknown as DatapathSnapshot }; // checked above: the fields the reader relies on
}
