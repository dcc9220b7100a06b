// What the agent asks of an encryption mode (WireGuard or IPsec): set up its datapath, follow the
// cluster's nodes, publish what peers need to know, and report its state.
import type { RegistryObject } from '../control/registry.js';
import type { Logger } from '../util/log.js';
import type { Registry } from '../control/registry.js';
import type { Settings } from './settings.js';
import type { Health } from './health.js';
import type { EncryptStatus } from './api.js';
import type { ModeMetricsSnapshot } from './metrics.js';

/** A remote node as the agent sees it in the registry. */
export interface PeerNode {
  name: string;
  internalIP: string;
  podCIDR: string;
  /** Its pod gateway (on the node side of its pods, and on its tunnel device): health probes go there. */
  podGateway: string;
  object: RegistryObject;
}

export interface AgentContext {
  cluster: string;
  nodeName: string;
  internalIP: string;
  podCIDR: string;
  /** This node's pod gateway, also its address on the tunnel device. */
  podGateway: string;
  underlayMtu: number;
  underlayInterface: string;
  bootID: string;
  /** The node's own state directory (keys, sequence marks, sockets). */
  stateDir: string;
  settings: Settings;
  registry: Registry;
  log: Logger;
  health: Health;
  /** Publishes the node object now (e.g. a newly loaded IPsec SPI) instead of at the next heartbeat. */
  requestPublish: () => Promise<void>;
  /** Reconciles now (e.g. after a key change). */
  requestReconcile: () => void;
}

export interface EncryptionMode {
  /** 'Wireguard' or 'IPsec' (Cilium's spelling of the mode). */
  readonly mode: 'Wireguard' | 'IPsec';
  /** The tunnel device name. */
  readonly device: string;
  /** Creates the device and the datapath; fails with a VeilError the agent reports. */
  start(): Promise<void>;
  /** Makes peers/SAs and routes match the set of remote nodes. Idempotent. */
  reconcile(peers: PeerNode[]): Promise<void>;
  /** Adds what peers must know about this node (keys, SPI) to its own registry object. */
  publish(self: RegistryObject): RegistryObject;
  /** The detail of the `Encryption:` status line. */
  statusDetail(): string;
  /** `veil agent encrypt status` as JSON (Cilium's EncryptionStatus shape plus veil's details). */
  encryptStatus(): Promise<EncryptStatus>;
  /** What the metrics export of this mode, read once per scrape. */
  modeMetrics(): Promise<ModeMetricsSnapshot>;
  /** Stops the datapath worker; device and routes stay, so a restart loses nothing and leaks nothing. */
  stop(): Promise<void>;
}
