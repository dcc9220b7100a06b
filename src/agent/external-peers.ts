// Cluster members that run no veil agent: a VM or bare-metal host with kernel WireGuard or kernel
// IPsec, an operator's laptop (Kilo's Peer resource). Each is a Peer object in the registry
// (`veil peer add`), validated like a node: a 32-byte public key, an endpoint, allowed IPs that
// collide with no node's addresses or pod CIDRs and no other peer's. Every agent adds the admitted
// ones to its own peers; a refused one is a status problem naming what it collides with.
import { randomUUID } from 'node:crypto';
import type { Registry, RegistryObject, Watch } from '../control/registry.js';
import { cidrContains, cidrsOverlap, formatCidr, parseCidr, parseIp, type Cidr } from '../net/cidr.js';
import { VeilError } from '../util/errors.js';
import { listOf, type OneOrMore } from '../util/one-or-more.js';
import type { SlotPool } from '../util/slot-pool.js';
import type { NodeSource, OwnFields, OwnNode, PeerNode, PeersRead } from './node-source.js';
import type { LeaseHandle } from '../control/registry.js';

/** What the agent sends a peer when its endpoint names no port: veil's own (WireGuard) port. */
export const DEFAULT_PEER_PORT = 51871;

export interface ExternalPeer {
  name: string;
  /** WireGuard public key, standard base64 of 32 bytes (absent: an IPsec-only peer). */
  publicKey?: string;
  endpoint: { address: string; port: number };
  /** The addresses routed to the peer (its own, the networks behind it): canonical CIDRs. */
  allowedIPs: string[];
  /** Seconds; 0 off. */
  persistentKeepalive: number;
  /** IPsec: the id mixed into the per-tunnel keys in place of a node's boot id (Cilium derives from boot ids). */
  bootID: string;
  /** IPsec: the key id (SPI) the peer was last configured with by `veil ipsec peer-config`; absent: none yet. */
  ipsecKeyId?: number;
}

const KEY_RE = /^[A-Za-z0-9+/]{43}=$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Why a public key is unusable, or undefined. */
export function publicKeyProblem(key: string): string | undefined {
  if (!KEY_RE.test(key) || Buffer.from(key, 'base64').length !== 32) return `the public key "${key}" is not 32 bytes in base64 (44 characters, as 'wg pubkey' prints it)`;
  if (/^A{43}=$/.test(key)) return 'the public key is all zero';
  return undefined;
}

/** "IP:PORT" or "[IPv6]:PORT" (or a bare IP: port 51871). Throws a VeilError saying what is wrong. */
export function parseEndpoint(text: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const port = m?.[2] === undefined ? DEFAULT_PEER_PORT : Number(m[2]);
  try {
    if (!m) throw new Error('no address');
    parseIp(m[1]!);
  } catch {
    throw new VeilError('INVALID_PEER', `--endpoint "${text}" is not IP:PORT`, 'give the address the cluster reaches the peer at, e.g. --endpoint 192.0.2.10:51820');
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new VeilError('INVALID_PEER', `--endpoint "${text}": port ${m![2]} is not 1..65535`, 'e.g. --endpoint 192.0.2.10:51820');
  return { address: m![1]!, port };
}

/** Canonical CIDRs (a bare address becomes /32 or /128). Throws a VeilError naming the bad one. */
export function parseAllowedIPs(texts: string[]): string[] {
  if (!texts.length) throw new VeilError('INVALID_PEER', 'a peer needs --allowed-ips', 'list the addresses routed to it, e.g. --allowed-ips 10.250.0.1/32,192.168.50.0/24');
  return texts.map((t) => {
    try {
      const c = parseCidr(t.includes('/') ? t : `${t}/${t.includes(':') ? 128 : 32}`, { strict: true });
      return formatCidr(c);
    } catch (e) {
      throw new VeilError('INVALID_PEER', `--allowed-ips "${t}" is not a CIDR: ${(e as Error).message}`, 'e.g. 10.250.0.0/24 (host bits zero) or 10.250.0.1/32');
    }
  });
}

/** The peer object as stored. */
export function externalPeerObject(p: ExternalPeer): RegistryObject {
  return {
    kind: 'Peer', metadata: { name: p.name },
    spec: {
      ...(p.publicKey ? { publicKey: p.publicKey } : {}), endpoint: p.endpoint, allowedIPs: p.allowedIPs,
      persistentKeepalive: p.persistentKeepalive, bootID: p.bootID, ...(p.ipsecKeyId ? { ipsecKeyId: p.ipsecKeyId } : {}),
    },
  };
}

/** A new peer from the CLI's flags; throws a VeilError saying what is wrong. */
export function newExternalPeer(name: string, f: { publicKey?: string; endpoint: string; allowedIPs: string[]; keepalive?: number; bootID?: string }): ExternalPeer {
  const keyProblem = f.publicKey === undefined ? undefined : publicKeyProblem(f.publicKey);
  if (keyProblem) throw new VeilError('INVALID_PEER', `--public-key: ${keyProblem}`, "give the peer's public key: wg pubkey < its private key");
  const keepalive = f.keepalive ?? 0;
  if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) throw new VeilError('INVALID_PEER', `--keepalive ${f.keepalive} is not 0..65535 seconds`, 'e.g. --keepalive 25 behind NAT, 0 (default) off');
  const bootID = (f.bootID ?? randomUUID()).toLowerCase();
  if (!UUID_RE.test(bootID)) throw new VeilError('INVALID_PEER', `--boot-id "${f.bootID}" is not a UUID`, 'use the peer host\'s /proc/sys/kernel/random/boot_id, or leave it out for a random one');
  return { name, publicKey: f.publicKey, endpoint: parseEndpoint(f.endpoint), allowedIPs: parseAllowedIPs(f.allowedIPs), persistentKeepalive: keepalive, bootID };
}

/** The peer a stored object describes, or why it is unusable (a hand-written or hostile object). */
export function externalPeerFromObject(obj: RegistryObject): ExternalPeer | string {
  const s = obj.spec ?? {};
  const ep = s['endpoint'] as { address?: unknown; port?: unknown } | undefined;
  const allowed = s['allowedIPs'];
  try {
    if (typeof ep?.address !== 'string' || typeof ep.port !== 'number') return 'no endpoint';
    const endpoint = parseEndpoint(`${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`);
    if (!Array.isArray(allowed) || !allowed.every((a) => typeof a === 'string')) return 'no allowed IPs';
    const publicKey = typeof s['publicKey'] === 'string' ? s['publicKey'] : undefined;
    const bootID = typeof s['bootID'] === 'string' ? s['bootID'] : '';
    const p = newExternalPeer(obj.metadata.name, { publicKey, endpoint: `${endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address}:${endpoint.port}`, allowedIPs: allowed as string[], keepalive: typeof s['persistentKeepalive'] === 'number' ? s['persistentKeepalive'] : 0, bootID });
    const keyId = s['ipsecKeyId'];
    return typeof keyId === 'number' && Number.isInteger(keyId) && keyId >= 1 && keyId <= 15 ? { ...p, ipsecKeyId: keyId } : p;
  } catch (e) {
    return (e as Error).message;
  }
}

/** What a node holds that a peer must not claim. */
export interface NodeClaim { name: string; ips: OneOrMore<string>; podCIDRs: OneOrMore<string>; publicKey?: string }

/**
 * Why `p` collides with a node or an earlier peer, or undefined: its allowed IPs overlap a node's
 * pod CIDR or another peer's allowed IPs, or contain a node's address (the underlay); its key is
 * a node's or another peer's.
 */
export function peerCollision(p: ExternalPeer, nodes: NodeClaim[], peers: ExternalPeer[]): string | undefined {
  const mine = p.allowedIPs.map((c) => ({ text: c, cidr: parseCidr(c) }));
  const overlap = (text: string, cidr: Cidr, whose: string): string | undefined => {
    for (const m of mine) if (cidrsOverlap(m.cidr, cidr)) return `its allowed IPs ${m.text} overlap ${text} of ${whose}`;
    return undefined;
  };
  for (const n of nodes) {
    if (n.name === p.name) return `its name is that of node '${n.name}'`;
    if (p.publicKey && n.publicKey === p.publicKey) return `its public key is that of node '${n.name}'`;
    for (const c of listOf(n.podCIDRs)) {
      const why = overlap(c, parseCidr(c), `node '${n.name}' (its pod CIDR)`);
      if (why) return why;
    }
    for (const ip of listOf(n.ips)) {
      const addr = parseIp(ip);
      for (const m of mine) if (cidrContains(m.cidr, addr)) return `its allowed IPs ${m.text} contain the address ${ip} of node '${n.name}'`;
    }
  }
  for (const q of peers) {
    if (q.name === p.name) continue;
    if (p.publicKey && q.publicKey === p.publicKey) return `its public key is that of peer '${q.name}'`;
    for (const c of q.allowedIPs) {
      const why = overlap(c, parseCidr(c), `peer '${q.name}'`);
      if (why) return why;
    }
  }
  return undefined;
}

/** A peer as the encryption modes take it: no node IPs to encrypt, no pod gateway to probe. */
export function externalPeerNode(p: ExternalPeer, slot: number): PeerNode {
  return {
    name: p.name, slot, internalIP: p.endpoint.address, internalIPs: [], podCIDRs: p.allowedIPs, podGateway: '',
    bootID: p.bootID, encryptionKey: p.ipsecKeyId,
    annotations: p.publicKey ? { 'network.veil.io/wg-pub-key': p.publicKey } : {},
    external: { port: p.endpoint.port, persistentKeepalive: p.persistentKeepalive },
  };
}

/**
 * Where the Peer objects come from: the registry's (etcd, the embedded one), or the Kubernetes API's
 * Peer resources (followed by an informer).
 */
export interface PeerObjects {
  /** Fills the current set (failing only where nothing could run), then calls onChange after each change until stop(). */
  follow(onChange: () => void): Promise<void>;
  /** The objects as last seen. */
  objects(): RegistryObject[];
  /** Why the objects cannot be followed right now (it is retried), or undefined. */
  problem(): string | undefined;
  stop(): void;
}

/** The Peer objects of a registry that watches (etcd, embedded). */
export class RegistryPeerObjects implements PeerObjects {
  private readonly byName = new Map<string, RegistryObject>();
  /** objects() as last handed out, until the next change (the same array: callers can tell nothing changed). */
  private list?: RegistryObject[];
  private watch?: Watch;

  constructor(private readonly registry: Registry) {}

  async follow(onChange: () => void): Promise<void> {
    const rev = await this.registry.revision();
    for (const o of await this.registry.list('Peer')) this.byName.set(o.metadata.name, o);
    this.list = undefined;
    this.watch = this.registry.watch('Peer', rev, (ev) => {
      if (ev.type === 'DELETED') this.byName.delete(ev.object.metadata.name);
      else this.byName.set(ev.object.metadata.name, ev.object);
      this.list = undefined;
      onChange();
    });
  }

  objects(): RegistryObject[] {
    return (this.list ??= [...this.byName.values()]);
  }

  problem(): string | undefined {
    return undefined;
  }

  stop(): void {
    this.watch?.stop();
  }
}

/** The admitted Peer objects as peers, and the refused ones: 'peer NAME' -> why. */
interface Admission { peers: PeerNode[]; refused: ReadonlyMap<string, string> }
const NO_PEER_OBJECTS: Admission = { peers: [], refused: new Map() };

/** Where a source's failure to follow the Peer objects shows in the agent's health. */
export const PEER_OBJECTS_CHECK = 'peer (Peer objects)'; // no peer name has a space or parentheses

/**
 * A NodeSource with the Peer objects added to the nodes another source gives: each admitted oldest
 * first against this node, the admitted nodes and the peers admitted before it.
 */
export class WithExternalPeers implements NodeSource {
  private own?: OwnNode;
  /** The last admission and what it was made from (by identity: the sources hand out the same arrays until something changes). */
  private last?: { claims: PeerNode[]; objects: RegistryObject[]; own?: OwnNode; result: Admission };
  /** peers() as last made, and from what. */
  private lastPeers?: { nodes: PeerNode[]; result: Admission; peers: PeerNode[] };
  /** Each admitted Peer object's slot, from the node source's pool (PeerNode.slot), while it stays admitted. */
  private readonly slotOfPeer = new Map<string, number>();

  constructor(private readonly inner: NodeSource, private readonly peerObjects: PeerObjects) {}

  get slots(): SlotPool {
    return this.inner.slots;
  }

  async self(): Promise<OwnNode> {
    this.own = await this.inner.self();
    return this.own;
  }

  peers(): PeerNode[] {
    const nodes = this.inner.peers();
    const result = this.admission();
    if (!result.peers.length) return nodes; // no Peer objects (the usual cluster): the node source's own array
    const l = this.lastPeers;
    if (l?.nodes === nodes && l.result === result) return l.peers;
    return (this.lastPeers = { nodes, result, peers: [...nodes, ...result.peers] }).peers;
  }

  nodeClaims(): PeerNode[] {
    return this.inner.nodeClaims();
  }

  refusedPeers(): ReadonlyMap<string, string> {
    const refused = new Map(this.inner.refusedPeers());
    for (const [k, v] of this.admission().refused) refused.set(k, v);
    const problem = this.peerObjects.problem();
    if (problem) refused.set(PEER_OBJECTS_CHECK, problem);
    return refused;
  }

  /**
   * Against every node's claim, its agent alive or not: a Peer on an away node's pods would flap.
   * Made again only when the Peer objects, the node claims or this node changed: a pass over 5,000
   * nodes does not build 5,000 claims to admit no Peer at all.
   */
  private admission(): Admission {
    const objects = this.peerObjects.objects();
    if (!objects.length) return this.slotOfPeer.size ? this.slotted({ peers: [], refused: NO_PEER_OBJECTS.refused }) : NO_PEER_OBJECTS;
    const nodes = this.inner.nodeClaims();
    const l = this.last;
    if (l?.objects === objects && l.claims === nodes && l.own === this.own) return l.result;
    const claims: NodeClaim[] = nodes.map((n) => ({ name: n.name, ips: n.internalIPs, podCIDRs: n.podCIDRs, publicKey: n.annotations['network.veil.io/wg-pub-key'] }));
    if (this.own) claims.unshift({ name: this.own.name, ips: this.own.internalIPs, podCIDRs: this.own.podCIDRs });
    const age = (o: RegistryObject) => o.metadata.creationTimestamp ?? '';
    const admitted: ExternalPeer[] = [];
    const refused = new Map<string, string>();
    for (const o of [...objects].sort((x, y) => age(x).localeCompare(age(y)) || x.metadata.name.localeCompare(y.metadata.name))) {
      const p = externalPeerFromObject(o);
      const why = typeof p === 'string' ? p : peerCollision(p, claims, admitted);
      if (why) refused.set(`peer ${o.metadata.name}`, `peer object refused: ${why}`);
      else admitted.push(p as ExternalPeer);
    }
    const result = this.slotted({ peers: admitted, refused });
    this.last = { claims: nodes, objects, own: this.own, result };
    return result;
  }

  /** The admitted peers as PeerNodes, each with its slot (a Peer object keeps its own while admitted; the slots of those gone are given back). */
  private slotted(a: { peers: ExternalPeer[]; refused: ReadonlyMap<string, string> }): Admission {
    const pool = this.inner.slots, slots = this.slotOfPeer;
    const names = new Set(a.peers.map((p) => p.name));
    for (const [name, slot] of slots) if (!names.has(name)) { slots.delete(name); pool.release(slot); }
    const peers = a.peers.map((p) => {
      let slot = slots.get(p.name);
      if (slot === undefined) slots.set(p.name, slot = pool.take());
      return externalPeerNode(p, slot);
    });
    return { peers, refused: a.refused };
  }

  async watchPeers(onChange: () => void, read?: PeersRead): Promise<void> {
    await this.inner.watchPeers(onChange, read);
    await this.peerObjects.follow(onChange);
    onChange();
  }

  publish(fields: OwnFields): Promise<void> {
    return this.inner.publish(fields);
  }

  published(): OwnFields | undefined {
    return this.inner.published();
  }

  holdLiveness(ttlSeconds: number, holder: Record<string, unknown>, onLost: (e: Error) => void): Promise<LeaseHandle> {
    return this.inner.holdLiveness(ttlSeconds, holder, onLost);
  }

  close(): void {
    this.peerObjects.stop();
    this.inner.close();
  }
}
