// The node source over a Registry (any backend: embedded, etcd): Node objects hold each node's
// addresses (written by whoever registers the node: the lab, or a host) and what its agent
// published; Lease/<node> proves the agent alive, and only a node whose agent is alive is a peer (a
// host that stops or dies leaves its peers when its lease lapses). An informer cache of Node
// objects and of the live leases' names answers peers(); watches and a periodic relist keep it
// current. A lease renewal is a keepalive, not a write: it never wakes a watcher.
import type { LeaseHandle, Registry, RegistryObject, Watch } from '../control/registry.js';
import { addressAt, parseCidr } from '../net/cidr.js';
import { VeilError } from '../util/errors.js';
import type { PublishedAgentStatus } from './api.js';
import { admitPeers } from './peer-admission.js';
import { OwnFieldsWriter, PeerViewFilter } from './own-fields-writer.js';
import { BOOT_ID_FILE, readBootID, type NodeSource, type OwnFields, type OwnNode, type PeerNode } from './node-source.js';

const RELIST_INTERVAL_MS = 10_000;
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

export class RegistryNodeSource implements NodeSource {
  /** The Node objects as the watch delivered them: a watch event carries the object as committed. */
  private readonly nodes = new Map<string, RegistryObject>();
  private readonly deleted = new Map<string, number>();
  /** The live leases: name -> resourceVersion (-1: deleted at that version, kept to ignore older news). */
  private readonly leases = new Map<string, { rv: number; live: boolean; goneAt?: number }>();
  private watch?: Watch;
  private leaseWatch?: Watch;
  private relistTimer?: NodeJS.Timeout;
  private readonly graceTimers = new Set<NodeJS.Timeout>();
  private readonly peerView = new PeerViewFilter();
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

  peers(): PeerNode[] {
    return this.admission().admitted;
  }

  refusedPeers(): ReadonlyMap<string, string> {
    return this.admission().refused;
  }

  /** Every node with a live agent, admitted as a peer unless its object is unusable or claims what another node holds. */
  private admission(): { admitted: PeerNode[]; refused: Map<string, string> } {
    const candidates: PeerNode[] = [];
    const unusable = new Map<string, string>();
    // Oldest first: where two nodes claim the same thing (a key, an address), the one that was there first keeps it.
    const age = (n: RegistryObject) => String(n.metadata.creationTimestamp ?? ''); // String(): a backend may hand over any JSON
    const byAge = [...this.nodes.values()].sort((x, y) => age(x).localeCompare(age(y)) || x.metadata.name.localeCompare(y.metadata.name));
    for (const n of byAge) {
      if (n.metadata.name === this.nodeName) continue;
      if (!this.alive(n.metadata.name)) continue; // no live agent there: not a peer
      const a = nodeAddresses(n);
      if (typeof a === 'string') { unusable.set(`peer ${n.metadata.name}`, `node object refused: ${a}`); continue; } // its prefixes are not routed to it
      const key = (n.spec?.['encryption'] as { key?: unknown } | undefined)?.key;
      candidates.push({
        name: n.metadata.name, internalIP: a.internalIPs[0]!, internalIPs: a.internalIPs, podCIDRs: a.podCIDRs, podGateway: a.podGateway,
        bootID: agentStatusOf(n)?.bootID, encryptionKey: typeof key === 'number' ? key : undefined, annotations: { ...(n.metadata.annotations ?? {}) },
      });
    }
    const selfObj = this.nodes.get(this.nodeName);
    const own = selfObj ? nodeAddresses(selfObj) : undefined;
    const self = own && typeof own !== 'string' ? { name: this.nodeName, ips: own.internalIPs, podCIDRs: own.podCIDRs } : undefined;
    const { admitted, refused } = admitPeers(self, candidates.map((c) => ({ ...c, ips: c.internalIPs })));
    for (const [k, v] of unusable) refused.set(k, v);
    // Objects the registry could not even read (garbage where a node should be): named by their key.
    for (const { key, reason } of this.registry.invalidObjects?.() ?? []) {
      const m = /\/nodes\/([^/]+)$/.exec(key);
      if (m && m[1] !== this.nodeName) refused.set(`peer ${m[1]}`, `registry object ${key} refused: ${reason}`);
    }
    return { admitted: admitted.map(({ ips: _ips, ...peer }) => peer), refused };
  }

  async watchPeers(onChange: () => void): Promise<void> {
    this.peerView.onChange = onChange;
    // Watch from before the list: a peer that publishes meanwhile is not missed until the next relist.
    const rev = await this.registry.revision();
    await this.relist();
    this.watch = this.registry.watch('Node', rev, (ev) => {
      this.cache(ev.object, ev.type === 'DELETED');
      if (ev.object.metadata.name === this.nodeName) this.reassert(ev.object);
      this.notify();
    });
    this.leaseWatch = this.registry.watch('Lease', rev, (ev) => {
      this.cacheLease(ev.object.metadata.name, ev.object.metadata.resourceVersion ?? 0, ev.type !== 'DELETED');
      this.notify();
    });
    this.relistTimer = setInterval(() => { void this.relist().catch(() => undefined); }, RELIST_INTERVAL_MS);
  }

  private async relist(): Promise<void> {
    const leases = await this.registry.list('Lease');
    const live = new Set(leases.map((l) => l.metadata.name));
    for (const l of leases) this.cacheLease(l.metadata.name, l.metadata.resourceVersion ?? 0, true);
    for (const [name, l] of this.leases) if (l.live && !live.has(name)) this.cacheLease(name, l.rv, false);
    const listed = await this.registry.list('Node');
    const names = new Set(listed.map((n) => n.metadata.name));
    for (const n of listed) this.cache(n);
    for (const name of [...this.nodes.keys()]) if (!names.has(name) && !this.deleted.has(name)) this.nodes.delete(name);
    this.notify();
  }

  private cache(obj: RegistryObject, deleted = false): void {
    const name = obj.metadata.name;
    const rv = obj.metadata.resourceVersion ?? 0;
    const have = this.nodes.get(name)?.metadata.resourceVersion ?? this.deleted.get(name) ?? -1;
    if (rv < have) return; // never go back to an older version
    if (deleted) { this.nodes.delete(name); this.deleted.set(name, rv); }
    else { this.nodes.set(name, obj); this.deleted.delete(name); }
  }

  private cacheLease(name: string, rv: number, live: boolean): void {
    const was = this.leases.get(name);
    if (rv < (was?.rv ?? -1)) return; // never go back to an older version
    if (live || !was?.live) { this.leases.set(name, { rv, live, goneAt: live ? undefined : was?.goneAt }); return; }
    this.leases.set(name, { rv, live: false, goneAt: Date.now() });
    const t: NodeJS.Timeout = setTimeout(() => { this.graceTimers.delete(t); this.notify(); }, LEASE_GRACE_MS + 100).unref();
    this.graceTimers.add(t);
  }

  /** Its agent holds its lease, or held it less than LEASE_GRACE_MS ago. */
  private alive(name: string): boolean {
    const l = this.leases.get(name);
    return !!l && (l.live || (l.goneAt !== undefined && Date.now() - l.goneAt < LEASE_GRACE_MS));
  }

  /** Only what the modes use counts as a change: liveness and other agents' health do not. */
  private notify(): void {
    const { admitted, refused } = this.admission();
    this.peerView.update(admitted, refused);
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
    if (this.relistTimer) clearInterval(this.relistTimer);
    for (const t of this.graceTimers) clearTimeout(t);
    this.registry.close();
  }
}
