// The agent's API (HTTP on its status socket; HTTPS with a token on the network): the paths and the JSON each one answers. The
// status server builds these shapes, and the CLI, the operator views and the tests read them with
// these same types, so a field renamed on one side does not silently go missing on the other.
import type { AgentExit } from './agent-runs.js';
import type { RotationRecord } from './wireguard-key-rotation.js';
import type { EspEngineCounters, EspPeerStatus, EspSaStatus, WireGuardEngineCounters } from '../datapath/messages.js';
import type { EspDropCounters } from '../esp/esp-decoder.js';
import type { DropReason } from '../wireguard/stats.js';
import type { HealthCheck, HealthState } from './health.js';
import type { PeerHealth } from './health-prober.js';
import type { CiliumModeName } from './settings.js';
import type { HeapFigures } from '../util/heap-figures.js';
import type { MallocStats } from '../native/malloc-stats.js';

export const AGENT_API = {
  healthz: '/healthz',
  encrypt: '/encrypt',
  metrics: '/metrics',
  /** ?keys=1 adds key material (the socket is root's alone); ?peer=NAME: that peer's SAs only. */
  ipsecSas: '/ipsec/sas',
  /** ?collect=1: a full garbage collection on both threads first (live heap only; costs tens of ms of CPU). */
  memory: '/memory',
} as const;

/** GET /memory: the agent process's resident memory (from /proc) and each thread's V8 heap. */
export interface AgentMemory {
  /** VmRSS and its anonymous part (heaps, native allocations; the rest is mapped files: code). */
  rssBytes: number;
  rssAnonBytes: number;
  main: HeapFigures;
  /** Absent while no tunnel runs. */
  datapath?: HeapFigures;
  /** Every thread's malloc arena, live and free bytes (read after the heaps, so after a collection's frees). Absent from agents before it. */
  malloc?: MallocStats;
}

/** Cilium's spelling of the modes (`cilium encrypt status`), or none. */
export type EncryptionModeName = 'Disabled' | CiliumModeName;

/** GET /healthz */
export interface Healthz {
  node: string;
  pid: number;
  /** The veil version the agent runs (its package.json): an upgrade shows here. Absent: an agent from before it was reported. */
  version?: string;
  startedAt: string;
  health: { state: HealthState; checks: HealthCheck[] };
  encryption: { mode: EncryptionModeName; device?: string; detail?: string };
  nodeEncryption?: boolean;
}

/**
 * What the agent publishes as status.agent of its Node object (written only when it changes;
 * liveness is its lease, Lease/<node>), for `veil status` and its peers (the boot id).
 */
export interface PublishedAgentStatus {
  ready: boolean;
  pid: number;
  bootID: string;
  startedAt: string;
  /** The veil version the agent runs (absent: an agent from before it was published). */
  version?: string;
  health: { state: HealthState; problems: string[] };
  encryption?: Healthz['encryption'];
  /** The agent API on the network (https://IP:agent.apiPort), absent when it could not listen. */
  apiAddress?: string;
  /** SHA-256 of that API's certificate (AB:CD:...): clients pin exactly this one. */
  apiFingerprint?: string;
  /** Why the latest start failed (then ready is false). */
  error?: string;
  /**
   * A host agent's runs as its state dir records them (agent-runs.ts): restarts and how the run
   * before ended. `backoff` is written by the unit's ExecStopPost (`veil agent stopped`) once this
   * pid has died: systemd restarts it.
   */
  supervision?: { restarts: number; state: 'running' | 'backoff' | 'stopped'; lastExit?: AgentExit };
}

/** What `veil agent status` prints after "Encryption: ": the mode and its detail. */
export function encryptionLine(e: Healthz['encryption']): string {
  return `${e.mode}${e.detail ? ` ${e.detail}` : ''}`;
}

// ---- GET /encrypt: Cilium's EncryptionStatus, plus veil's details

export interface WireGuardPeerJson {
  node?: string;
  'public-key': string;
  endpoint?: string;
  'allowed-ips': string[];
  /** ISO 8601; 0001-01-01T00:00:00.000Z for never (Go's zero time). */
  'last-handshake-time': string;
  'transfer-rx': number;
  'transfer-tx': number;
}

export interface WireGuardInterfaceJson {
  name: string;
  'listen-port': number;
  'public-key': string;
  'peer-count': number;
  peers: WireGuardPeerJson[];
}

export interface IpsecStatusJson {
  'decrypt-interfaces': string[];
  'keys-in-use': number;
  /** "0x1a/0xffffffffffffffff", or N/A without SAs. */
  'max-seq-number': string;
  'error-count': number;
  'xfrm-errors': Record<string, number>;
}

/**
 * Cilium's EncryptionStatus as its readers take it: every field but the mode may be missing (as
 * in Cilium's API, and in the stand-in {mode:'Disabled'} for a node without an agent).
 */
export interface CiliumEncryptionStatus {
  mode: EncryptionModeName;
  msg?: string;
  ipsec?: Partial<IpsecStatusJson>;
  wireguard?: {
    interfaces?: (Partial<Omit<WireGuardInterfaceJson, 'peers'>> & { peers?: Partial<WireGuardPeerJson>[] | null })[];
    'node-encryption'?: 'Enabled' | 'Disabled';
  };
}

export interface WireGuardEncryptStatus extends CiliumEncryptionStatus {
  mode: 'Wireguard';
  wireguard: {
    interfaces: WireGuardInterfaceJson[]; 'node-encryption': 'Enabled' | 'Disabled';
    /** veil: the node's static key rotation (the last one, or the one in progress). */
    'key-rotation'?: RotationRecord & { retiringKey: string | null };
  };
  counters: WireGuardEngineCounters;
  /** The WireGuard core's drops by reason. */
  drops: Record<DropReason, number>;
  probes?: PeerHealth[];
  /** Native ChaCha20-Poly1305 contexts the engine keeps (WireGuardEngineStatus.aeadContexts). Absent from agents before it. */
  aeadContexts?: number;
}

export interface IpsecEncryptStatus extends CiliumEncryptionStatus {
  mode: 'IPsec';
  ipsec: IpsecStatusJson;
  /** The key id (SPI) loaded from the key file, and the one this node publishes. */
  keyId?: number;
  publishedSpi: number;
  retiredKeys: { spi: number; since: string }[];
  sas: EspSaStatus[];
  drops: EspDropCounters;
  counters: EspEngineCounters;
  probes?: PeerHealth[];
}

/** What a running agent's /encrypt answers. */
export type EncryptStatus = WireGuardEncryptStatus | IpsecEncryptStatus;

/** GET /ipsec/sas: the ESP engine's SAs and peers, and this node's addresses. */
export interface IpsecSasReport {
  node: string;
  internalIP: string;
  podCIDR: string;
  sas: EspSaStatus[];
  peers: EspPeerStatus[];
  /** Peers in the datapath (all, also when ?peer= lists one). */
  peerCount: number;
  /** Native AES-GCM contexts the engine keeps (EspEngineStatus.aeadContexts). Absent from agents before it. */
  aeadContexts?: number;
}
