// Every message between the agent (main thread) and the datapath worker: what the worker starts
// with, the control requests each engine answers, their replies and the status it reports. Both
// sides import these types, so a field added on one side is a compile error on the other until it
// is handled there too.
import type { PackedSa, PackedTransform } from '../esp/esp-transform.js';
import type { EspDropCounters } from '../esp/esp-decoder.js';
import type { DropReason } from '../wireguard/stats.js';
import type { TunCounters, TunQueueDescriptor } from './tun-device.js';
import type { UdpCounters, UdpSocketDescriptor } from './udp-socket.js';
import type { WireGuardSessions } from '../wireguard/session-snapshot.js';
import type { EspReplayWindowState } from '../esp/replay-window.js';
import type { OneOrMore } from '../util/one-or-more.js';

// ---- what the worker starts with (its workerData) ------------------------------------------------

/** The fds the agent opened, and how many threads share large AEAD batches (1 = the worker alone). */
interface WorkerIo {
  tun: TunQueueDescriptor;
  udp: UdpSocketDescriptor;
  cryptoThreads: number;
  /** The worker thread's nice value (setting datapath.priority; 0 leaves it as it is). */
  priority: number;
  /** SCHED_FIFO while the worker moves little (setting datapath.realtime; idle-realtime.ts). */
  realtime: boolean;
}

export interface WireGuardEngineInit {
  privateKey: Uint8Array;
  mtu: number;
  keylogFile?: string;
  /** Device clock (performance.now()) to Unix ms. */
  wallClockOffsetMs: number;
  /** The state of the datapath this one takes over from (a restart with handover), if any. */
  resume?: EngineResume<WireGuardEngineState>;
}

export interface EspEngineInit {
  localIp: string;
  mtu: number;
  /** File of persisted sequence marks and inbound replay marks (JSON {markId: mark}), fsync'd before numbers are used or accepted. */
  marksFile: string;
  marks: Record<string, number>;
  /** How long an SA's native AEAD context outlives its last packet (esp-engine.ts AEAD_IDLE_MS unless given). */
  aeadIdleMs?: number;
  /** A packet within this long of its SA's previous one gives the SA a native AEAD context of its own (AEAD_HOT_MS unless given). */
  aeadHotMs?: number;
  /** The state of the datapath this one takes over from (a restart with handover), if any. */
  resume?: EngineResume<EspEngineState>;
}

export type WorkerInit =
  | ({ kind: 'wireguard' } & WorkerIo & WireGuardEngineInit)
  | ({ kind: 'esp' } & WorkerIo & EspEngineInit);

export type EngineKind = WorkerInit['kind'];

/** The worker's workerData: its init and the eventfd its host signals after each request (native/wake-fd.c). */
export type WorkerData = WorkerInit & { wakeFd: number };

// ---- desired state the agent hands an engine ----------------------------------------------------

export interface WireGuardPeerSpec {
  publicKey: string; // base64
  endpoint: { address: string; port: number } | null;
  allowedIPs: string[];
  persistentKeepalive: number; // seconds
  /** A name for status (the node). */
  name?: string;
  /**
   * The key the peer's node announced it will switch to (static key rotation): handshakes from it
   * are accepted as this peer's. A spec whose publicKey changed for the same name switches the
   * peer's key in place (its sessions go on).
   */
  nextPublicKey?: string;
}

/**
 * An SA: its SPI and its keys packed, one object (esp-transform.ts PackedSa; a peer's keys share one
 * buffer).
 */
export type EspSaSpec = PackedSa;

export interface EspPeerSpec {
  /** Not sent by the agent (the engine keeps no names: it answers by tunnel IP). */
  name?: string;
  /** The peer's tunnel (node) IP: outer destination of outbound SAs, outer source of inbound. */
  ip: string;
  /** Its prefixes: the one itself (the agent's specs share their peer's one pod CIDR: an array of one was ~60 B a peer), or an array. */
  allowedIPs: OneOrMore<string>;
  /**
   * Outbound SAs for every key in force; the one with activeSpi carries traffic (0: none yet). One
   * SA itself when one key is in force (the agent's specs: an array of one per direction was ~56 B
   * a peer), an array during a rotation (and always in a handover's state).
   */
  outbound: OneOrMore<EspSaSpec>;
  activeSpi: number;
  inbound: OneOrMore<EspSaSpec>;
}

// ---- the state one datapath hands the next (a restart or upgrade without loss) --------------------

/** A WireGuard engine's state: its peers as last set, and every live session. */
export interface WireGuardEngineState {
  peers: WireGuardPeerSpec[];
  sessions: WireGuardSessions;
}

/** One SA's live numbers; the SA itself (keys) is in the peers' specs. */
export interface EspSaState {
  direction: 'in' | 'out';
  spi: number;
  /** The peer's tunnel IP. */
  peer: string;
  /** Outbound: the last sequence number sent. */
  last?: number;
  /** Inbound: the replay window. */
  replay?: EspReplayWindowState;
  bytes: number;
  packets: number;
}

/**
 * A peer in a handover's state: as EspPeerSpec, with each SA as { spi, transform }, the shape the
 * agents before the SA specs were one object (session 18) hand over and read: an agent hands over
 * to the next version, and back to the last one.
 */
export interface EspStatePeer extends Omit<EspPeerSpec, 'outbound' | 'inbound'> {
  outbound: OneOrMore<EspStateSa>;
  inbound: OneOrMore<EspStateSa>;
}

export interface EspStateSa {
  spi: number;
  transform: PackedTransform;
}

/** An ESP engine's state: its peers (SAs with keys) as last set, and each SA's sequence or replay window. */
export interface EspEngineState {
  peers: EspStatePeer[];
  sas: EspSaState[];
}

export type EngineStateOf = { wireguard: WireGuardEngineState; esp: EspEngineState };

/** What a stopping datapath answers to 'handover', and what the next one starts from. */
export interface EngineResume<S> {
  state: S;
  /** When the old datapath stopped (Unix ms): the time since then passed without any packet. */
  exportedAtUnixMs: number;
}

// ---- counters ------------------------------------------------------------------------------------

/** Inner packets and bytes each way through the tunnel. */
export interface TrafficCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

/**
 * Packets the WireGuard engine drops itself before or after the core (every transport packet's
 * own verdict, e.g. replay or decryptFailed, is the core's, in `drops`). The metrics export
 * exactly this list, so a new drop counter reaches them by being named here.
 */
export const WIREGUARD_ENGINE_DROPS = [
  'noRoute', 'sourceNotAllowed', 'malformed', 'tooBig', 'sendFailed',
] as const;

export type WireGuardEngineCounters = TrafficCounters & Record<(typeof WIREGUARD_ENGINE_DROPS)[number], number> & {
  /** Packets staged in the core while a handshake runs (not dropped). */
  staged: number;
};

/** Packets the ESP engine drops itself (the decoder's drops are `drops`); the metrics export this list. */
export const ESP_ENGINE_DROPS = [
  'noRoute', 'noOutboundSa', 'sourceNotAllowed', 'malformed', 'tooBig', 'sendFailed', 'sequenceWait', 'sequenceExhausted',
  'replayMarkFailed',
] as const;

export type EspEngineCounters = TrafficCounters & Record<(typeof ESP_ENGINE_DROPS)[number], number>;

// ---- status --------------------------------------------------------------------------------------

export interface WireGuardPeerStatus {
  name: string | null;
  publicKey: string;
  endpoint: string | null;
  allowedIPs: string[];
  lastHandshakeUnixMs: number | null;
  rxBytes: number;
  txBytes: number;
  /** Transport packets each way (keepalives included). */
  rxPackets: number;
  txPackets: number;
  /** Live session keypairs (current, previous, next). */
  keypairs: number;
  persistentKeepalive: number;
  /** The peer's announced next key (a rotation of its node in progress), or null. */
  nextPublicKey: string | null;
  /** The latest handshake with it used our current static key (a rotation of ours is confirmed by it). */
  onCurrentKey: boolean;
}

export interface WireGuardEngineStatus {
  publicKey: string;
  /** During a rotation of our static key: the old public key, still answered until retired. */
  retiringPublicKey: string | null;
  listenPort: number;
  peers: WireGuardPeerStatus[];
  /** Native ChaCha20-Poly1305 contexts held (aead-contexts.ts: each way of a keypair that carried a packet lately counts one). */
  aeadContexts: number;
  counters: WireGuardEngineCounters;
  drops: Record<DropReason, number>;
  tun: TunCounters;
  udp: UdpCounters;
}

/** One SA as the ESP engine reports it; `ip xfrm state` and the SA export are made from it. */
export interface EspSaStatus {
  /** Its peer's name (the engine answers its tunnel IP; IpsecMode.engineStatus names it). */
  peer: string;
  direction: 'in' | 'out';
  src: string;
  dst: string;
  spi: number;
  mode: 'tunnel';
  encap: string;
  /** describeTransform(), e.g. rfc4106(gcm(aes)) 128. */
  algorithm: string;
  icvBits: number;
  replayWindow: number;
  esn: boolean;
  transform: { aead?: string; auth?: string; enc?: string };
  /** Outbound: the SA that carries traffic to its peer; inbound SAs are always active. */
  active: boolean;
  bytes: number;
  packets: number;
  addTimeMs: number;
  useTimeMs: number;
  /** Outbound: the last sequence number used; inbound: the top of the replay window. */
  sequence: number;
  /** Only with showKeys: hex as tshark wants it (AES-GCM: key||salt). */
  key?: { encryption: string; authentication?: string };
}

export interface EspPeerStatus {
  /** As EspSaStatus.peer. */
  name: string;
  ip: string;
  activeSpi: number;
  allowedIPs: string[];
}

export interface EspEngineStatus {
  sas: EspSaStatus[];
  drops: EspDropCounters;
  /** The drops by the /proc/net/xfrm_stat name Linux would count them under. */
  xfrmErrors: Record<string, number>;
  counters: EspEngineCounters;
  /** Peers in the engine (all of them, also when `peers` lists one). */
  peerCount: number;
  /** Native AEAD contexts kept: one per SA that carries traffic (esp-engine.ts AEAD_HOT_MS, AEAD_IDLE_MS); a lone packet gets one for its batch only. */
  aeadContexts: number;
  /** SAs whose next sequence or replay mark is being written (sequence-mark-writer.ts): stays above 0 while the disk does not answer. */
  marksPending: number;
  peers: EspPeerStatus[];
  tun: TunCounters;
  udp: UdpCounters;
}

// ---- control requests and their replies, per engine ---------------------------------------------

/** An engine's control protocol: for each request type, the request and what the engine answers. */
type Protocol = Record<string, { request: { type: string }; reply: unknown }>;

/**
 * A change to some peers (the agent sends diffs, not the table): `upsert` adds or updates peers by
 * their identity (WireGuard: the public key; ESP: the peer's IP), `remove` drops peers by it.
 * Removals go first, so an identity can move between names in one request (WireGuard: a peer both
 * removed and upserted is updated instead, so a key rotation keeps its sessions).
 */
export interface PeerUpdate<Spec> { type: 'updatePeers'; upsert: Spec[]; remove: string[] }

export type WireGuardProtocol = {
  updatePeers: { request: PeerUpdate<WireGuardPeerSpec>; reply: { peers: number } };
  /** The whole table at once (tests, tools): peers not in it are removed. */
  setPeers: { request: { type: 'setPeers'; peers: WireGuardPeerSpec[] }; reply: { peers: number } };
  /**
   * The digest of the table as the engine was given it (wireguard-table-digest.ts), as EspProtocol's:
   * made after a peer update, else the one made then; full: made from the whole table anyway.
   */
  digest: { request: { type: 'digest'; full?: boolean }; reply: { digest: string } };
  status: { request: { type: 'status' }; reply: WireGuardEngineStatus };
  /** Switches the static key (raw 32-byte private key); the old one is answered until retireKey. */
  rotateKey: { request: { type: 'rotateKey'; privateKey: Uint8Array }; reply: { publicKey: string } };
  retireKey: { request: { type: 'retireKey' }; reply: { retired: boolean } };
};

export type EspProtocol = {
  updatePeers: { request: PeerUpdate<EspPeerSpec>; reply: { peers: number; sas: number } };
  setPeers: { request: { type: 'setPeers'; peers: EspPeerSpec[] }; reply: { peers: number; sas: number } };
  /**
   * The digest of the table the engine holds (esp-table-digest.ts): the agent's whole pass compares
   * it with its specs'. Made from the whole table after a peer update, else the one made then (only
   * peer updates change the table; a whole table read every minute was ~15 ms of the worker's CPU at
   * 5,000 peers); full: made from the whole table anyway (drift no message made, now and then).
   */
  digest: { request: { type: 'digest'; full?: boolean }; reply: { digest: string } };
  status: { request: { type: 'status'; showKeys?: boolean; peer?: string }; reply: EspEngineStatus };
};

export type ProtocolOf = {
  wireguard: WireGuardProtocol;
  esp: EspProtocol;
};

/** The requests an engine of protocol P answers (a union discriminated by `type`). */
export type RequestOf<P extends Protocol> = P[keyof P]['request'] & { type: string };
/** What the engine answers to request R. */
export type ReplyTo<P extends Protocol, R extends RequestOf<P>> = Extract<P[keyof P], { request: { type: R['type'] } }>['reply'];
/** Any reply of protocol P. */
export type AnyReplyOf<P extends Protocol> = P[keyof P]['reply'];

/** The loop itself answers this one (null) and then closes the engine. */
export interface StopRequest { type: 'stop' }

/**
 * The loop answers this one too: it stops moving packets, answers with the engine's state
 * (EngineResume) and closes the engine, which never sends again: the next datapath goes on from
 * exactly that state (sequence numbers, replay windows) with the same fds.
 */
export interface HandoverRequest { type: 'handover' }

/** The loop answers this one too: the worker thread's heap (HeapFigures), after a full collection if asked. */
export interface MemoryRequest { type: 'memory'; collect: boolean }

/** Agent to worker. */
export interface ControlEnvelope<Request extends { type: string } = RequestOf<WireGuardProtocol> | RequestOf<EspProtocol>> {
  id: number;
  request: Request | StopRequest | HandoverRequest | MemoryRequest;
}

export interface ControlError {
  code: string;
  message: string;
  hint?: string;
}

/** Worker to agent: once 'ready' after the engine is built, then one reply per envelope. */
export type WorkerMessage =
  | { type: 'ready'; /** The errno name when the worker's priority could not be raised (it runs at 0). */ priorityRefused?: string; /** The errno name when it may not run SCHED_FIFO (it stays SCHED_OTHER). */ realtimeRefused?: string }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: ControlError };
