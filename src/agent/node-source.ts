// Where the agent's node comes from: the seam between the agent and its environment. The agent
// learns its own node, follows its peers and publishes its own fields only through a NodeSource,
// so it runs the same whether the node objects were written by the lab, by a host's registration
// or by Kubernetes. Liveness is kept apart (a lease), so that staying alive never makes other
// agents reconcile.
import { readFileSync } from 'node:fs';
import type { LeaseHandle } from '../control/registry.js';
import type { PublishedAgentStatus } from './api.js';
import { VeilError, errorMessage } from '../util/errors.js';
import type { OneOrMore } from '../util/one-or-more.js';
import type { SlotPool } from '../util/slot-pool.js';

/** The kernel's id of this boot: it changes on every reboot (Cilium derives IPsec keys from it). */
export const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/** This node, as the agent needs it. */
export interface OwnNode {
  name: string;
  /** The node's underlay address(es); the first is the tunnel endpoint. */
  internalIPs: string[];
  /** The pod CIDR(s) routed to this node. */
  podCIDRs: string[];
  /** The node's pod gateway (given, or the first address of its first pod CIDR); also its tunnel address. */
  podGateway: string;
  underlayInterface: string;
  underlayMtu: number;
  bootID: string;
}

/** A remote node as the agent sees it: its addresses and what its agent published. */
export interface PeerNode {
  name: string;
  /**
   * Its slot (source.slots): every layer keeps what it holds of the peer in columns by it, not in a
   * map of its own keyed by the peer (~50 B a map a peer). A node keeps it while it is cached; a slot
   * given back is handed to another peer later: a layer tells its peer changed by the object or its name.
   */
  slot: number;
  /** The tunnel endpoint (the first internal IP). */
  internalIP: string;
  /**
   * Its addresses and pod CIDRs: the one itself, an array only when there are more or none
   * (util/one-or-more.ts; an array of one was ~60 B, two a peer). A string is iterable too: read
   * them with listOf(), never by a loop over the field itself.
   */
  internalIPs: OneOrMore<string>;
  podCIDRs: OneOrMore<string>;
  /** Its pod gateway (on the node side of its pods, and on its tunnel device): health probes go there. */
  podGateway: string;
  /** Published by its agent; absent until its agent ran. */
  bootID?: string;
  /** The encryption key id its agent published (IPsec: the SPI it uses; Cilium's spec.encryption.key). */
  encryptionKey?: number;
  annotations: Record<string, string>;
  /** A member that runs no veil agent (a Peer object): its port and keepalive; it has no node IPs or pod gateway. */
  external?: { port: number; persistentKeepalive: number };
}

/** What the follower of the peers reads of them, of what not every follower needs. */
export interface PeersRead {
  /**
   * Their agents' boot ids (PeerNode.bootID); default true. A follower that does not read them (one
   * that derives no keys from them: EncryptionMode.readsBootIDs) gets peers without, and a reboot
   * alone changes none of them (a boot id was ~60 B a peer).
   */
  bootIDs?: boolean;
}

/** The agent's own published fields. Each is written only when it differs from what is stored. */
export interface OwnFields {
  agent: PublishedAgentStatus;
  /** The mode's published key id; undefined removes it. */
  encryptionKey?: number;
  /** Annotations this agent owns: a string sets one, null removes it. */
  annotations: Record<string, string | null>;
}

export interface NodeSource {
  /** Where its peers' slots come from (PeerNode.slot): a source that adds peers to another's takes theirs from it. */
  readonly slots: SlotPool;
  /** This node; fails with a VeilError saying what is missing. */
  self(): Promise<OwnNode>;
  /** The peers as last seen (every node but this one with addresses). */
  peers(): PeerNode[];
  /**
   * Every node whose claim (addresses, pod CIDRs) was admitted, its agent alive or not: a claim lasts
   * as long as its node object, so what else is admitted (Peer objects) is checked against these.
   */
  nodeClaims(): PeerNode[];
  /** Nodes refused as peers ('peer NAME' -> why: an unusable object, or one claiming what another node holds). */
  refusedPeers(): ReadonlyMap<string, string>;
  /**
   * Follows the peers: onChange runs when anything the modes use changed (not on liveness or health).
   * What its follower reads of them (PeersRead): what it does not is not kept, nor followed.
   */
  watchPeers(onChange: () => void, read?: PeersRead): Promise<void>;
  /** Writes the own fields, and nothing when they are unchanged. */
  publish(fields: OwnFields): Promise<void>;
  /** The fields as last published (undefined before the first publish). */
  published(): OwnFields | undefined;
  /** Keeps this node's liveness lease while the agent runs. */
  holdLiveness(ttlSeconds: number, holder: Record<string, unknown>, onLost: (e: Error) => void): Promise<LeaseHandle>;
  close(): void;
}

/** The boot id, lowercased and trimmed, from the kernel's file. */
export function readBootID(file = BOOT_ID_FILE): string {
  try {
    return readFileSync(file, 'utf8').trim().toLowerCase();
  } catch (e) {
    throw new VeilError('NO_BOOT_ID', `cannot read the node's boot id from ${file}: ${errorMessage(e)}`, 'the agent needs Linux with /proc mounted');
  }
}
