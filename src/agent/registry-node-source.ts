// The node source over a Registry (any backend: embedded, etcd): Node objects hold each node's
// addresses (written by whoever registers the node: the lab, or a host) and what its agent
// published; Lease/<node> proves the agent alive, and only a node whose agent is alive is a peer (a
// host that stops or dies leaves its peers when its lease lapses). An informer cache of Node
// objects and of the live leases' names answers peers(); watches and a periodic relist keep it
// current. A lease renewal is a keepalive, not a write: it never wakes a watcher.
import type { LeaseHandle, Registry, RegistryObject, Watch } from '../control/registry.js';
import { addressAt, parseCidr } from '../net/cidr.js';
import { oneOrMore, sameElements } from '../util/one-or-more.js';
import { VeilError } from '../util/errors.js';
import type { PublishedAgentStatus } from './api.js';
import { PeerAdmission, creationOrder } from './peer-admission.js';
import { NodeRecords } from './node-records.js';
import { SlotPool } from '../util/slot-pool.js';
import { OwnFieldsWriter } from './own-fields-writer.js';
import { BOOT_ID_FILE, readBootID, type NodeSource, type OwnFields, type OwnNode, type PeerNode, type PeersRead } from './node-source.js';

/** The relist behind the watches (they have their own watchdog): jittered ±20 %, cheap when nothing changed. */
const RELIST_INTERVAL_MS = 30_000;
/** How often the registry's view of unreadable node objects is looked at (see readInvalid). */
const INVALID_READ_INTERVAL_MS = 2_000;
/** A relist reads the moved Node objects one by one up to this many, else lists them all. */
const RELIST_READ_ONE_BY_ONE = 64;
/**
 * Where the registry can say what changed since a revision (etcd), a relist asks for that and the
 * count only; every this many relists (~5 min) it lists every name and version all the same.
 */
const COMPLETE_RELIST_EVERY = 10;
/**
 * A node stays a peer this long after its lease went. After a registry outage a lease can lapse in
 * the seconds before its holder's next renewal gets through (the holder then takes a new one): seen
 * as 16 pings lost at 50/s right after etcd came back from 60 s down. One renewal interval bridges
 * it; a host that is really gone leaves within TTL + this.
 */
export const LEASE_GRACE_MS = 5_000;

/** The addresses in a Node object's spec, or the reason they are unusable. */
interface NodeAddresses {
  internalIPs: string[];
  podCIDRs: string[];
  podGateway: string;
  underlayInterface?: string;
  mtu?: number;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length > 0) : typeof v === 'string' && v ? [v] : [];
}

function nodeAddresses(obj: RegistryObject): NodeAddresses | string {
  const s = obj.spec ?? {};
  const internalIPs = strings(s['internalIPs']).length ? strings(s['internalIPs']) : strings(s['internalIP']);
  const podCIDRs = strings(s['podCIDRs']).length ? strings(s['podCIDRs']) : strings(s['podCIDR']);
  if (!internalIPs.length) return 'no internal IP';
  if (!podCIDRs.length) return 'no pod CIDR';
  let podGateway = typeof s['podGateway'] === 'string' ? s['podGateway'] : '';
  try {
    if (!podGateway) podGateway = addressAt(parseCidr(podCIDRs[0]!, { strict: true }), 1);
  } catch (e) {
    return `bad pod CIDR ${podCIDRs[0]}: ${(e as Error).message}`;
  }
  const mtu = typeof s['mtu'] === 'number' ? s['mtu'] : undefined;
  const underlayInterface = typeof s['underlayInterface'] === 'string' ? s['underlayInterface'] : undefined;
  return { internalIPs, podCIDRs, podGateway, underlayInterface, mtu };
}

/** The annotations of every peer without any: one object (an empty one per peer was ~56 B), frozen since it is shared. */
const NO_ANNOTATIONS: Record<string, string> = Object.freeze({});

/** The peer a usable Node object makes: only what peers need of it (the object itself is not kept). */
function peerOf(n: RegistryObject, a: NodeAddresses, slot: number, bootIDs: boolean): PeerNode {
  const key = (n.spec?.['encryption'] as { key?: unknown } | undefined)?.key;
  const annotations = n.metadata.annotations ?? {};
  return {
    name: n.metadata.name, slot, internalIP: a.internalIPs[0]!, internalIPs: oneOrMore(a.internalIPs), podCIDRs: oneOrMore(a.podCIDRs), podGateway: a.podGateway,
    bootID: bootIDs ? agentStatusOf(n)?.bootID : undefined, encryptionKey: typeof key === 'number' ? key : undefined,
    annotations: Object.keys(annotations).length ? { ...annotations } : NO_ANNOTATIONS,
  };
}

/** Whether two peers say the same (a Node object rewritten with only its status changed). */
function samePeer(a: PeerNode, b: PeerNode): boolean {
  const ak = Object.keys(a.annotations), bk = Object.keys(b.annotations);
  return a.name === b.name && a.slot === b.slot && a.internalIP === b.internalIP && sameElements(a.internalIPs, b.internalIPs) && sameElements(a.podCIDRs, b.podCIDRs)
    && a.podGateway === b.podGateway && a.bootID === b.bootID && a.encryptionKey === b.encryptionKey
    && ak.length === bk.length && ak.every((k) => a.annotations[k] === b.annotations[k]);
}

/** status.agent of a Node object, if its agent ever reported. */
export function agentStatusOf(obj: RegistryObject): Partial<PublishedAgentStatus> | undefined {
  // any part may be missing: an agent that never reported, or one of another version
  return obj.status?.['agent'] as Partial<PublishedAgentStatus> | undefined;
}

/** Ready: the node's agent holds its liveness lease and reports ready. */
export function nodeReady(obj: RegistryObject, lease: RegistryObject | undefined): boolean {
  return lease !== undefined && agentStatusOf(obj)?.ready === true;
}

/** The live leases by name (a lease is named after the node it proves alive). */
export async function leasesByName(reg: Registry): Promise<Map<string, RegistryObject>> {
  return new Map((await reg.list('Lease')).map((l) => [l.metadata.name, l]));
}

/**
 * The node object with the agent's own fields applied, or undefined when they are already there
 * (pure: registry.mutate may run it more than once).
 */
export function withOwnFields(cur: RegistryObject, f: OwnFields): RegistryObject | undefined {
  const annotations = { ...(cur.metadata.annotations ?? {}) };
  for (const [k, v] of Object.entries(f.annotations)) {
    if (v === null) delete annotations[k];
    else annotations[k] = v;
  }
  const spec = { ...(cur.spec ?? {}) };
  if (f.encryptionKey === undefined) delete spec['encryption'];
  else spec['encryption'] = { key: f.encryptionKey };
  const next: RegistryObject = { ...cur, metadata: { ...cur.metadata, annotations }, spec, status: { ...(cur.status ?? {}), agent: f.agent } };
  const same = JSON.stringify([cur.metadata.annotations ?? {}, cur.spec?.['encryption'], cur.status?.['agent']])
    === JSON.stringify([annotations, spec['encryption'], f.agent]);
  return same ? undefined : next;
}

/** A deleted lease's entry from the version it was deleted at, and back (its own inverse: -1 - rv, never a live one's). */
const leaseGone = (v: number): number => -1 - v;

/**
 * The informer: one event costs that node's work (its admission, and the nodes whose claims overlap
 * it), not a pass over every node; peers() hands out the same PeerNode object until that node
 * changes, so the modes and the tunnel can tell an unchanged peer by identity.
 */
export class RegistryNodeSource implements NodeSource {
  /**
   * The Node objects as the watch delivered them: what peers need of them, as columns by slot
   * (node-records.ts), with the admission's entries in the same slots.
   */
  readonly slots = new SlotPool();
  /** Whether the peers carry their boot ids (watchPeers' PeersRead). */
  private bootIDs = true;
  private readonly nodes = new NodeRecords(this.slots);
  /** Why a cached node's addresses are unusable (few have this: not a column). */
  private readonly unusableAddresses = new Map<string, string>();
  /** This node's addresses as its cached object says (or why they are unusable), and as text to tell a change of them from a rewrite of its status. */
  private selfCached?: { addresses: NodeAddresses | string; fingerprint: string };
  private readonly deleted = new Map<string, number>();
  /**
   * The leases of the names whose node the cache does not hold (a cached node's is in its slot):
   * a live one's resourceVersion, or leaseGone(version) for one deleted at that version (kept to
   * ignore older news). A number, not an object per lease (~48 B a peer).
   */
  private readonly uncachedLeases = new Map<string, number>();
  /** When each lease that was live went (LEASE_GRACE_MS). */
  private readonly leaseGoneAt = new Map<string, number>();
  /** Who may be a peer, kept up to date one node at a time; its entries are in the nodes' slots. */
  private readonly admission = new PeerAdmission<PeerNode>(this.nodes.entries());
  private readonly unusable = new Map<string, string>();
  private invalid = new Map<string, string>();
  private selfFingerprint?: string;
  /** Names whose peer or refusal changed since the last notification. */
  private readonly pending = new Set<string>();
  /** The admitted peers oldest first (where each is in it: its node's `index`); names changed since it was built. */
  private peerList: PeerNode[] = [];
  private readonly stale = new Set<string>();
  /** nodeClaims() until the admission changes (the same array: WithExternalPeers tells by identity that no claim moved). */
  private claims?: PeerNode[];
  private watch?: Watch;
  private leaseWatch?: Watch;
  private relistTimer?: NodeJS.Timeout;
  /** Per kind, the revision the last relist brought the cache up to (what changed after it is asked for next). */
  private readonly relistedAt = new Map<'Node' | 'Lease', number>();
  private relists = 0;
  private invalidTimer?: NodeJS.Timeout;
  private readonly graceTimers = new Set<NodeJS.Timeout>();
  private onChange: () => void = () => undefined;
  private readonly writer = new OwnFieldsWriter((fields) => this.registry.mutate('Node', this.nodeName, (cur) => (cur ? withOwnFields(cur, fields) : undefined)).then(() => undefined));

  constructor(readonly registry: Registry, readonly nodeName: string, private readonly bootIDFile = BOOT_ID_FILE) {}

  async self(): Promise<OwnNode> {
    const obj = await this.registry.get('Node', this.nodeName);
    if (!obj) throw new VeilError('UNKNOWN_NODE', `node '${this.nodeName}' is not in the registry`, 'register the node first (the lab does it for its nodes)');
    this.cache(obj);
    const a = nodeAddresses(obj);
    if (typeof a === 'string') throw new VeilError('BAD_NODE', `node '${this.nodeName}' in the registry is unusable: ${a}`, 'fix the Node object (spec.internalIP, spec.podCIDR)');
    if (!a.underlayInterface || !a.mtu) throw new VeilError('BAD_NODE', `node '${this.nodeName}' names no underlay interface or MTU`, 'set spec.underlayInterface and spec.mtu');
    return {
      name: this.nodeName, internalIPs: a.internalIPs, podCIDRs: a.podCIDRs, podGateway: a.podGateway,
      underlayInterface: a.underlayInterface, underlayMtu: a.mtu, bootID: readBootID(this.bootIDFile),
    };
  }

  /** The admitted peers, oldest first (where two nodes claim the same thing, the older keeps it). */
  peers(): PeerNode[] {
    if (!this.stale.size) return this.peerList;
    const list = [...this.peerList]; // a new array: a caller may hold the old one
    let rebuild = false;
    for (const name of this.stale) {
      const now = this.isLive(name) ? this.admission.admitted(name) : undefined;
      const slot = this.nodes.slotOf(name);
      const i = slot === undefined ? -2 : this.nodes.index(slot); // -2: its node went, and with it where it was in the list
      if (now && i >= 0) list[i] = now; // changed in place: same order
      else if (now || i !== -1) { rebuild = true; break; }
    }
    this.stale.clear();
    if (!rebuild) return (this.peerList = list);
    // an admitted peer's node is cached (its claim is its peer)
    const before = (x: PeerNode, y: PeerNode) => this.nodes.ageBefore(this.nodes.slotOf(x.name)!, x.name, this.nodes.slotOf(y.name)!, y.name);
    this.peerList = [...this.admission.admittedCandidates()].filter((c) => this.isLive(c.name)).sort((x, y) => (before(x, y) ? -1 : before(y, x) ? 1 : 0));
    this.nodes.clearIndexes();
    this.peerList.forEach((p, i) => this.nodes.setIndex(this.nodes.slotOf(p.name)!, i));
    return this.peerList;
  }

  nodeClaims(): PeerNode[] {
    return (this.claims ??= [...this.admission.admittedCandidates()]);
  }

  refusedPeers(): ReadonlyMap<string, string> {
    const refused = [...this.admission.refused].filter(([key]) => this.isLive(key.slice('peer '.length))); // a dead node's refusal harms nobody
    return new Map([...refused, ...this.unusable, ...this.invalid]);
  }

  async watchPeers(onChange: () => void, read?: PeersRead): Promise<void> {
    this.onChange = onChange;
    this.bootIDs = read?.bootIDs ?? true; // before the list: every peer made from here on
    // Watch from before the list: a peer that publishes meanwhile is not missed until the next relist.
    const rev = await this.registry.revision();
    await this.relist();
    // The watches read what the cache holds as what they delivered (the cache takes every event), where
    // each kept a map by name of its own (~45 B a peer each).
    this.watch = this.registry.watch('Node', rev, (ev) => {
      this.cache(ev.object, ev.type === 'DELETED');
      if (ev.object.metadata.name === this.nodeName) this.reassert(ev.object);
      this.notify();
    }, { version: (name) => this.version(name), names: () => this.nodes.names() });
    this.leaseWatch = this.registry.watch('Lease', rev, (ev) => {
      this.cacheLease(ev.object.metadata.name, ev.object.metadata.resourceVersion ?? 0, ev.type !== 'DELETED');
      this.notify();
    }, { version: (name) => { const l = this.lease(name); return l !== undefined && l >= 0 ? l : undefined; }, names: () => this.liveLeases().map(([name]) => name) });
    this.scheduleRelist();
    this.invalidTimer = setInterval(() => { this.readInvalid(); this.notify(); }, INVALID_READ_INTERVAL_MS).unref();
  }

  /** The safety net behind the watches, at a jittered interval so that agents do not all list at once. */
  private scheduleRelist(): void {
    const ms = RELIST_INTERVAL_MS * (0.8 + 0.4 * Math.random());
    this.relistTimer = setTimeout(() => {
      void this.relist().catch(() => undefined).finally(() => { if (this.relistTimer) this.scheduleRelist(); });
    }, ms);
  }

  /**
   * Names and versions first (where the registry lists keys alone): only the Node objects that moved
   * are read, so a relist of 5,000 unchanged nodes decodes none (was ~150 ms of CPU and ~19 MB of
   * garbage each). Lease liveness needs nothing but names and versions.
   */
  private async relist(): Promise<void> {
    const complete = ++this.relists % COMPLETE_RELIST_EVERY === 0;
    const leaseNews = await this.changed('Lease', complete, (name) => (this.lease(name) ?? -1) >= 0, () => this.liveLeaseCount());
    // What every relist does is done without a list or a set of every name (forEach, not for-of: at
    // 5,000 nodes a relist made ~0.8 MB of garbage that way); only what changed is collected.
    const leases = leaseNews.versions;
    leases.forEach((rv, name) => this.cacheLease(name, rv, true));
    if (leaseNews.complete) for (const [name, l] of this.liveLeases(leases)) this.cacheLease(name, l, false);
    const nodeNews = this.registry.versions || this.registry.changedSince
      ? await this.changed('Node', complete, (name) => this.nodes.has(name), () => this.nodes.size)
      : undefined;
    const versions = nodeNews?.versions;
    const moved: string[] = [];
    versions?.forEach((rv, name) => { if (rv > (this.version(name) ?? this.deleted.get(name) ?? -1)) moved.push(name); });
    // The names listed: all of them (complete), or only what changed, and the count showed that nothing
    // went: then every node the cache holds is still there.
    let listed: { has(name: string): boolean } | undefined = nodeNews && !nodeNews.complete ? undefined : versions;
    const unlisted = new Set<string>(); // moved, and gone meanwhile or unreadable: as a list would say
    if (!versions || moved.length > RELIST_READ_ONE_BY_ONE) { // a registry that cannot list keys alone: the objects
      const all = await this.registry.list('Node');
      listed = new Set(all.map((n) => n.metadata.name)); // an unreadable object is not listed: it leaves, as the list always had it
      for (const n of all) this.cache(n);
    } else {
      const unreadable = (e: unknown) => e instanceof VeilError && e.code === 'INVALID_OBJECT';
      for (const [name, obj] of await Promise.all(moved.map(async (name) => [name, await this.registry.get('Node', name).catch((e) => (unreadable(e) ? undefined : Promise.reject(e)))] as const))) {
        if (obj) this.cache(obj); else unlisted.add(name);
      }
    }
    const went: string[] = [];
    this.nodes.forEach((_, name) => { if ((unlisted.has(name) || (listed && !listed.has(name))) && !this.deleted.has(name)) went.push(name); });
    for (const name of went) { this.uncache(name); this.sync(name); }
    for (const [kind, news] of [['Lease', leaseNews], ['Node', nodeNews]] as const) if (news?.revision !== undefined) this.relistedAt.set(kind, news.revision);
    this.readInvalid();
    this.notify();
  }

  /**
   * What a relist learns of a kind: where the registry can say what changed since the last relist,
   * only that, when the count shows that nothing went (the objects the cache holds and the changed
   * ones not among them add up to the count: an object gone, or one the cache lacks, makes them
   * differ, and then every name is listed); else every name and version (`complete`).
   * cached: whether the cache holds a name; cachedCount: how many it holds.
   */
  private async changed(kind: 'Node' | 'Lease', complete: boolean, cached: (name: string) => boolean, cachedCount: () => number): Promise<{ versions: Map<string, number>; complete: boolean; revision?: number }> {
    const since = this.relistedAt.get(kind);
    if (!this.registry.changedSince) return { versions: await this.versionsOf(kind), complete: true };
    if (since !== undefined && !complete) {
      const news = await this.registry.changedSince(kind, since);
      let count = cachedCount();
      for (const name of news.versions.keys()) if (!cached(name)) count++;
      if (count === news.count) return { versions: news.versions, complete: false, revision: news.revision };
    }
    const all = await this.registry.changedSince(kind, undefined);
    return { versions: all.versions, complete: true, revision: all.revision };
  }

  /** name -> resourceVersion of every object of a kind (the objects themselves only where the registry cannot list keys alone). */
  private async versionsOf(kind: 'Node' | 'Lease'): Promise<Map<string, number>> {
    if (this.registry.versions) return this.registry.versions(kind);
    return new Map((await this.registry.list(kind)).map((o) => [o.metadata.name, o.metadata.resourceVersion ?? 0]));
  }

  /**
   * Objects the registry could not even read (garbage where a node should be), named by their key.
   * The registry's watch keeps its view of them current but delivers no event for them (there is no
   * object), so it is read here at every relist and every few seconds: no I/O, a map's size.
   */
  private readInvalid(): void {
    const invalid = new Map<string, string>();
    for (const { key, reason } of this.registry.invalidObjects?.() ?? []) {
      const m = /\/nodes\/([^/]+)$/.exec(key);
      if (m && m[1] !== this.nodeName) invalid.set(`peer ${m[1]}`, `registry object ${key} refused: ${reason}`);
    }
    for (const k of new Set([...invalid.keys(), ...this.invalid.keys()])) if (invalid.get(k) !== this.invalid.get(k)) this.pending.add(k.slice('peer '.length));
    this.invalid = invalid;
  }

  /** The resourceVersion of a cached node's object. */
  private version(name: string): number | undefined {
    const slot = this.nodes.slotOf(name);
    return slot === undefined ? undefined : this.nodes.rv(slot);
  }

  private cache(obj: RegistryObject, deleted = false): void {
    const name = obj.metadata.name;
    const rv = obj.metadata.resourceVersion ?? 0;
    const cached = this.nodes.slotOf(name);
    const have = cached === undefined ? this.deleted.get(name) ?? -1 : this.nodes.rv(cached);
    // Never go back to an older version. The same one again is no news: a relist of what the cache
    // holds, or of the version whose deletion the watch delivered (the list was answered before it).
    if (rv < have || (rv === have && !deleted)) return;
    if (deleted) { this.uncache(name); this.deleted.set(name, rv); }
    else {
      const addresses = nodeAddresses(obj);
      const slot = this.nodes.slotFor(name); // a new one: not live, no admission entry yet; a cached one keeps its entry as it was
      const made = name === this.nodeName || typeof addresses === 'string' ? undefined : peerOf(obj, addresses, slot, this.bootIDs);
      const was = cached === undefined ? undefined : this.nodes.peer(cached);
      // A rewrite of its status only (health, heartbeat) keeps the peer object: the modes and the tunnel tell it unchanged by identity.
      const peer = made && was && samePeer(was, made) ? was : made;
      this.nodes.setRv(slot, rv);
      this.nodes.setPeer(slot, peer);
      this.nodes.setAge(slot, creationOrder(String(obj.metadata.creationTimestamp ?? ''))); // String(): a backend may hand over any JSON
      if (name === this.nodeName) this.selfCached = { addresses, fingerprint: JSON.stringify(addresses) };
      else if (typeof addresses === 'string') this.unusableAddresses.set(name, addresses);
      else this.unusableAddresses.delete(name);
      this.deleted.delete(name);
      if (cached === undefined) {
        this.nodes.setLease(slot, this.uncachedLeases.get(name));
        this.uncachedLeases.delete(name);
      }
    }
    this.sync(name);
  }

  /** A node leaves the cache, and its claim the admission (its entry is in its slot); its lease stays known. */
  private uncache(name: string): void {
    const slot = this.nodes.slotOf(name);
    if (slot === undefined) return;
    if (this.nodes.candidate(slot)) {
      this.claims = undefined;
      for (const c of this.admission.remove(name)) this.pending.add(c);
    }
    const l = this.nodes.lease(slot);
    this.nodes.delete(name);
    this.unusableAddresses.delete(name);
    if (name === this.nodeName) this.selfCached = undefined;
    if (l !== undefined) this.uncachedLeases.set(name, l);
  }

  /** A name's lease: a live one's resourceVersion, leaseGone(version) for one deleted at that version, or undefined. */
  private lease(name: string): number | undefined {
    const slot = this.nodes.slotOf(name);
    return slot === undefined ? this.uncachedLeases.get(name) : this.nodes.lease(slot);
  }

  private setLease(name: string, l: number): void {
    const slot = this.nodes.slotOf(name);
    if (slot !== undefined) this.nodes.setLease(slot, l);
    else this.uncachedLeases.set(name, l);
  }

  /** Every live lease (but those `except` names): name and resourceVersion. */
  private liveLeases(except?: ReadonlyMap<string, number>): [string, number][] {
    const live: [string, number][] = [];
    this.nodes.forEach((slot, name) => { const l = this.nodes.lease(slot); if (l !== undefined && l >= 0 && !except?.has(name)) live.push([name, l]); });
    this.uncachedLeases.forEach((l, name) => { if (l >= 0 && !except?.has(name)) live.push([name, l]); });
    return live;
  }

  /** How many leases are live (every relist asks: no list made). */
  private liveLeaseCount(): number {
    let count = 0;
    this.nodes.forEach((slot) => { if ((this.nodes.lease(slot) ?? -1) >= 0) count++; });
    this.uncachedLeases.forEach((l) => { if (l >= 0) count++; });
    return count;
  }

  private cacheLease(name: string, rv: number, live: boolean): void {
    const l = this.lease(name);
    const wasLive = l === undefined ? undefined : l >= 0, wasRv = l === undefined ? -1 : l >= 0 ? l : leaseGone(l);
    if (rv < wasRv) return; // never go back to an older version
    // A list answered before a deletion the watch already delivered names the lease at the version
    // that was deleted: not alive again (a lease taken again has a newer version).
    if (live && wasLive === false && rv <= wasRv) return;
    if (live || !wasLive) {
      this.setLease(name, live ? rv : leaseGone(rv));
      if (live) this.leaseGoneAt.delete(name);
      if (live !== wasLive) this.sync(name);
      return;
    }
    this.setLease(name, leaseGone(rv));
    this.leaseGoneAt.set(name, Date.now());
    const t: NodeJS.Timeout = setTimeout(() => { this.graceTimers.delete(t); this.sync(name); this.notify(); }, LEASE_GRACE_MS + 100).unref();
    this.graceTimers.add(t);
  }

  /** Whether its node is cached and was alive at its last sync (of the admitted, only these are peers; a node that goes was not). */
  private isLive(name: string): boolean {
    const slot = this.nodes.slotOf(name);
    return slot !== undefined && this.nodes.live(slot);
  }

  /** Its agent holds its lease, or held it less than LEASE_GRACE_MS ago. */
  private alive(name: string): boolean {
    const l = this.lease(name);
    if (l === undefined) return false;
    const goneAt = this.leaseGoneAt.get(name);
    return l >= 0 || (goneAt !== undefined && Date.now() - goneAt < LEASE_GRACE_MS);
  }

  /** Brings one node's admission up to date with its object and lease; only a change the modes see is pending. */
  private sync(name: string): void {
    if (name === this.nodeName) {
      const own = this.selfCached;
      if (own?.fingerprint === this.selfFingerprint) return;
      this.selfFingerprint = own?.fingerprint;
      const a = own?.addresses;
      this.claims = undefined;
      for (const c of this.admission.setSelf(a && typeof a !== 'string' ? { name, internalIPs: a.internalIPs, podCIDRs: a.podCIDRs } : undefined)) this.pending.add(c);
      return;
    }
    const slot = this.nodes.slotOf(name);
    const live = slot !== undefined && this.alive(name);
    const unusable = live ? this.unusableAddresses.get(name) : undefined;
    const bad = unusable !== undefined ? `node object refused: ${unusable}` : undefined; // its prefixes are not routed to it
    if (bad !== this.unusable.get(`peer ${name}`)) {
      if (bad) this.unusable.set(`peer ${name}`, bad); else this.unusable.delete(`peer ${name}`);
      this.pending.add(name);
    }
    // A claim holds while its object exists, lease or not: a node whose agent is down keeps its
    // addresses and pod CIDR, so a later object claiming them stays refused instead of taking over
    // its pods while it is away. Only a live node is a peer.
    const claim = slot === undefined ? undefined : this.nodes.peer(slot);
    const claimChanged = claim !== (slot === undefined ? undefined : this.nodes.candidate(slot)); // what the admission holds (its entry is in the slot)
    if (!claimChanged && live === (slot !== undefined && this.nodes.live(slot))) return;
    if (slot !== undefined) this.nodes.setLive(slot, live);
    if (claimChanged) {
      this.claims = undefined;
      const changed = claim
        ? this.admission.upsert(claim, this.nodes.age(slot!)) // the peer is its own claim
        : this.admission.remove(name);
      for (const c of changed) this.pending.add(c);
    }
    // A new peer object is news for the modes even when no admission verdict moved (its published
    // IPsec key id, boot id, annotations): without this a key id reached the agent only at its 10 s resync.
    this.pending.add(name);
  }

  /** Tells the agent that peers changed (only what the modes use counts: lease renewals and other agents' health do not). */
  private notify(): void {
    if (!this.pending.size) return;
    for (const name of this.pending) this.stale.add(name);
    this.pending.clear();
    this.onChange();
  }

  /** Someone else rewrote our fields (or the node object was recreated): write them again. */
  private reassert(obj: RegistryObject): void {
    this.writer.reassert((last) => withOwnFields(obj, last) === undefined);
  }

  publish(fields: OwnFields): Promise<void> {
    return this.writer.publish(fields);
  }

  published(): OwnFields | undefined {
    return this.writer.published();
  }

  holdLiveness(ttlSeconds: number, holder: Record<string, unknown>, onLost: (e: Error) => void): Promise<LeaseHandle> {
    return this.registry.holdLease(this.nodeName, ttlSeconds, { node: this.nodeName, ...holder }, onLost);
  }

  close(): void {
    this.watch?.stop();
    this.leaseWatch?.stop();
    if (this.relistTimer) clearTimeout(this.relistTimer);
    this.relistTimer = undefined;
    clearInterval(this.invalidTimer);
    for (const t of this.graceTimers) clearTimeout(t);
    this.registry.close();
  }
}
