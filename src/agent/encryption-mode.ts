// What the agent asks of an encryption mode (WireGuard or IPsec): its keys and how to open the
// tunnel, and, as a pure function of the peers, the state the tunnel should hold and what this
// node publishes. The agent owns everything with a side effect: the tunnel, health, publishing.
import type { SecretSource } from './agent-inputs.js';
import type { Logger } from '../util/log.js';
import type { EncryptionType, Settings } from './settings.js';
import type { Health } from './health.js';
import type { OwnNode, PeerNode } from './node-source.js';
import type { DesiredState, Tunnel, TunnelParams } from './tunnel.js';
import type { EngineKind } from '../datapath/messages.js';
import type { EncryptStatus } from './api.js';
import type { ModeMetricsSnapshot } from './metrics.js';

export interface ModeContext {
  node: OwnNode;
  /** The node's own state directory (keys, sequence marks). */
  stateDir: string;
  settings: Settings;
  /** Where the IPsec key secret comes from (the registry, or a mounted Secret). */
  secrets: SecretSource;
  log: Logger;
  health: Health;
  /** Asks for a reconcile pass (e.g. after a key change). */
  requestReconcile: () => void;
}

export interface EncryptionMode<K extends EngineKind = EngineKind> {
  readonly type: EncryptionType;
  /** The tunnel device name. */
  readonly device: string;
  /** Whether desired() reads the peers' boot ids (PeerNode.bootID): the node source keeps them only then (PeersRead). */
  readonly readsBootIDs: boolean;
  /** Loads the keys and says how to open the tunnel; fails with a VeilError the agent reports. */
  prepare(): Promise<TunnelParams<K>>;
  /**
   * Pure: the tunnel's state for these peers. `publishedKey` is the key id peers currently see
   * from this node (the encryption key it published last), undefined before the first publish.
   */
  desired(peers: PeerNode[], publishedKey: number | undefined): DesiredState<K>;
  /** The detail of the `Encryption:` status line, given the state applied last. */
  statusDetail(applied: DesiredState<K> | undefined): string;
  /** `veil agent encrypt status` as JSON (Cilium's EncryptionStatus shape plus veil's details). */
  encryptStatus(tunnel: Tunnel<K>, publishedKey: number | undefined): Promise<EncryptStatus>;
  /** What the metrics export of this mode, read once per scrape. */
  modeMetrics(tunnel: Tunnel<K>, publishedKey: number | undefined): Promise<ModeMetricsSnapshot>;
  /** The tunnel is open (a mode that drives it, e.g. a key rotation, keeps it). */
  attach?(tunnel: Tunnel<K>): void;
  /** Stops the mode's own watchers and timers. */
  stop(): void;
}
