// The node source over the Kubernetes API: this node and its peers are Node objects (the kubelet's
// status.addresses InternalIP, the IPAM's spec.podCIDRs, status.nodeInfo.bootID), followed by an
// informer (list + watch with bookmarks, relist on 410). What the agent publishes goes on its own
// Node as annotations; liveness is a coordination.k8s.io Lease per node in veil's namespace, and
// only a node whose agent renews its lease is a peer. A renewal is judged by when this agent saw it
// change, not by the holder's clock, so clock skew between nodes does not matter.
import type * as k8s from '@kubernetes/client-node';
import { KubernetesObjectApi, PatchStrategy } from '@kubernetes/client-node';
import type { LeaseHandle } from '../control/registry.js';
import { Informer, type KubeObject } from '../control/kubernetes/informer.js';
import { apiError, apiStatusCode } from '../control/kubernetes/kube-errors.js';
import { holdLease, leaseDurationMs, leaseRenewedAt, type LeaseHandle as KubeLeaseHandle } from '../control/kubernetes/kube-lease.js';
import { AGENT_STATUS_ANNOTATION, ENCRYPTION_KEY_ANNOTATION, agentStatusAnnotation, encryptionKeyAnnotation, kubeNodeView, type KubeNodeView } from '../control/kubernetes/kube-node.js';
import { underlayWithAddress, type Underlay } from '../host/underlay.js';
import { addressAt, parseCidr } from '../net/cidr.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { admitPeers } from './peer-admission.js';
import { SlotPool } from '../util/slot-pool.js';
import { OwnFieldsWriter, PeerViewFilter } from './own-fields-writer.js';
import { LEASE_GRACE_MS } from './registry-node-source.js';
import { BOOT_ID_FILE, readBootID, type NodeSource, type OwnFields, type OwnNode, type PeerNode, type PeersRead } from './node-source.js';

/** The field manager veil's agent writes as (kubectl shows it in managedFields). */
export const AGENT_FIELD_MANAGER = 'veil-agent';

export interface KubernetesNodeSourceOptions {
  kc: k8s.KubeConfig;
  nodeName: string;
  /** veil's namespace: the agents' Leases live there. */
  namespace: string;
  /** The underlay for this node's InternalIP (default: the interface holding it). */
  underlayFor?: (address: string) => Underlay;
  /** Where the boot id comes from when the Node does not say it. */
  bootIDFile?: string;
  log?: (msg: string) => void;
}

interface LeaseSeen { renewedAt?: number; observedAt: number; durationMs: number; holder?: string }

/** The patch of the annotations that makes them say `fields` (null removes one). */
function annotationPatch(f: OwnFields): Record<string, string | null> {
  return { [AGENT_STATUS_ANNOTATION]: JSON.stringify(f.agent), [ENCRYPTION_KEY_ANNOTATION]: f.encryptionKey === undefined ? null : String(f.encryptionKey), ...f.annotations };
}

function saysAlready(v: KubeNodeView, f: OwnFields): boolean {
  return Object.entries(annotationPatch(f)).every(([k, val]) => (val === null ? !(k in v.annotations) : v.annotations[k] === val));
}

function podGatewayOf(v: KubeNodeView): string | string[] {
  try {
    return addressAt(parseCidr(v.podCIDRs[0]!, { strict: true }), 1);
  } catch (e) {
    return [`bad pod CIDR ${v.podCIDRs[0]}: ${errorMessage(e)}`];
  }
}

export class KubernetesNodeSource implements NodeSource {
  private readonly objects: KubernetesObjectApi;
  private nodeInformer?: Informer;
  private leaseInformer?: Informer;
  private readonly leases = new Map<string, LeaseSeen>();
  private livenessTimer?: NodeJS.Timeout;
  private lease?: KubeLeaseHandle;
  private readonly peerView = new PeerViewFilter();
  readonly slots = new SlotPool();
  /** Whether the peers carry their boot ids (watchPeers' PeersRead). */
  private bootIDs = true;
  /** Each node's slot (PeerNode.slot), while the informer holds its object. */
  private readonly slotOfNode = new Map<string, number>();
  private admitted?: { admitted: PeerNode[]; refused: Map<string, string>; claims: PeerNode[] };
  private readonly writer = new OwnFieldsWriter((fields) => this.writeAnnotations(fields));

  constructor(private readonly o: KubernetesNodeSourceOptions) {
    this.objects = KubernetesObjectApi.makeApiClient(o.kc);
  }

  /** The informers' counters (lists, watches, 410s, bookmarks), for tests and metrics. */
  informerStats(): { nodes?: Informer['stats']; leases?: Informer['stats'] } {
    return { nodes: this.nodeInformer?.stats, leases: this.leaseInformer?.stats };
  }

  async self(): Promise<OwnNode> {
    const name = this.o.nodeName;
    let obj: KubeObject;
    try {
      obj = JSON.parse(JSON.stringify(await this.objects.read({ apiVersion: 'v1', kind: 'Node', metadata: { name } }))) as KubeObject;
    } catch (e) {
      if (apiStatusCode(e) === 404) throw new VeilError('UNKNOWN_NODE', `node '${name}' is not in the Kubernetes API`, "the agent's node name must be its pod's spec.nodeName (the DaemonSet passes it as NODE_NAME)");
      throw apiError(`cannot read node '${name}'`, e);
    }
    const v = kubeNodeView(obj);
    if (!v.internalIPs.length) throw new VeilError('BAD_NODE', `node '${name}' has no InternalIP in status.addresses`, 'the kubelet reports it; check the node with kubectl get node -o wide');
    if (!v.podCIDRs.length) throw new VeilError('BAD_NODE', `node '${name}' has no spec.podCIDRs`, 'veil routes each node\'s pod CIDR: let the cluster allocate them (kube-controller-manager --allocate-node-cidrs, the default with kubeadm and kind)');
    const gw = podGatewayOf(v);
    if (Array.isArray(gw)) throw new VeilError('BAD_NODE', `node '${name}': ${gw[0]}`, 'fix spec.podCIDRs');
    const underlay = (this.o.underlayFor ?? underlayWithAddress)(v.internalIPs[0]!);
    return {
      name, internalIPs: v.internalIPs, podCIDRs: v.podCIDRs, podGateway: gw, underlayInterface: underlay.interface, underlayMtu: underlay.mtu,
      bootID: v.bootID ?? readBootID(this.o.bootIDFile ?? BOOT_ID_FILE),
    };
  }

  peers(): PeerNode[] {
    return this.admission().admitted;
  }

  nodeClaims(): PeerNode[] {
    return this.admission().claims;
  }

  refusedPeers(): ReadonlyMap<string, string> {
    return this.admission().refused;
  }

  /** The admission as of the last informer event or liveness tick (a pass reads it three times; it is made once). */
  private admission(): { admitted: PeerNode[]; refused: Map<string, string>; claims: PeerNode[] } {
    return (this.admitted ??= this.admit());
  }

  private views(): KubeNodeView[] {
    return (this.nodeInformer?.items() ?? []).map(kubeNodeView);
  }

  private admit(): { admitted: PeerNode[]; refused: Map<string, string>; claims: PeerNode[] } {
    const views = this.views().sort((x, y) => x.createdMs - y.createdMs || x.name.localeCompare(y.name));
    const candidates: PeerNode[] = [];
    const unusable = new Map<string, string>();
    const slot = this.nodeSlots(views);
    const live = new Set<string>();
    for (const v of views) {
      if (v.name === this.o.nodeName) continue;
      // Every node's claim counts, lease or not: a node whose agent is down keeps its addresses and
      // pod CIDR, so a later object claiming them stays refused while it is away. Only a live one is a peer.
      if (this.alive(v.name)) live.add(v.name);
      const refuse = (why: string) => { if (live.has(v.name)) unusable.set(`peer ${v.name}`, `node object refused: ${why}`); };
      if (!v.internalIPs.length) { refuse('no InternalIP'); continue; }
      if (!v.podCIDRs.length) { refuse('no pod CIDR'); continue; }
      const gw = podGatewayOf(v);
      if (Array.isArray(gw)) { refuse(gw[0]!); continue; }
      const agent = agentStatusAnnotation(v);
      candidates.push({
        name: v.name, slot: slot(v.name), internalIP: v.internalIPs[0]!, internalIPs: v.internalIPs, podCIDRs: v.podCIDRs, podGateway: gw,
        bootID: !this.bootIDs ? undefined : v.bootID ?? (typeof agent?.['bootID'] === 'string' ? agent['bootID'] : undefined),
        encryptionKey: encryptionKeyAnnotation(v), annotations: { ...v.annotations },
      });
    }
    const own = views.find((v) => v.name === this.o.nodeName);
    const self = own ? { name: own.name, internalIPs: own.internalIPs, podCIDRs: own.podCIDRs } : undefined;
    const verdict = admitPeers(self, candidates);
    const refused = new Map([...verdict.refused].filter(([key]) => live.has(key.slice('peer '.length))));
    for (const [k, v] of unusable) refused.set(k, v);
    const claims = verdict.admitted;
    return { admitted: claims.filter((p) => live.has(p.name)), refused, claims };
  }

  /** Slots for these nodes (a node keeps its own while it stays); the slots of nodes gone are given back. */
  private nodeSlots(views: KubeNodeView[]): (name: string) => number {
    const names = new Set(views.map((v) => v.name));
    for (const [name, slot] of this.slotOfNode) if (!names.has(name)) { this.slotOfNode.delete(name); this.slots.release(slot); }
    return (name) => {
      let slot = this.slotOfNode.get(name);
      if (slot === undefined) this.slotOfNode.set(name, slot = this.slots.take());
      return slot;
    };
  }

  /** Its lease was renewed (as seen here) within its duration plus the grace. */
  private alive(name: string): boolean {
    const l = this.leases.get(name);
    return !!l && Date.now() - l.observedAt < l.durationMs + LEASE_GRACE_MS;
  }

  private seeLease(obj: KubeObject, deleted: boolean): void {
    const name = obj.metadata?.name ?? '';
    if (deleted) { this.leases.delete(name); return; }
    const renewedAt = leaseRenewedAt(obj);
    const holder = (obj['spec'] as { holderIdentity?: string } | undefined)?.holderIdentity;
    const was = this.leases.get(name);
    const now = Date.now();
    // First sight: trust the holder's time, never beyond now; later: the moment we saw it move.
    const observedAt = !was ? Math.min(now, renewedAt ?? 0) : was.renewedAt !== renewedAt || was.holder !== holder ? now : was.observedAt;
    this.leases.set(name, { renewedAt, observedAt, durationMs: leaseDurationMs(obj), holder });
  }

  async watchPeers(onChange: () => void, read?: PeersRead): Promise<void> {
    this.peerView.onChange = onChange;
    this.bootIDs = read?.bootIDs ?? true;
    const log = (m: string) => this.o.log?.(m);
    this.nodeInformer = new Informer(this.o.kc, { apiVersion: 'v1', kind: 'Node', path: '/api/v1/nodes' }, {
      upsert: (o) => { if (o.metadata?.name === this.o.nodeName) this.reassert(kubeNodeView(o)); this.notify(); },
      remove: () => this.notify(),
      error: log,
    });
    const ns = encodeURIComponent(this.o.namespace);
    this.leaseInformer = new Informer(this.o.kc, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: this.o.namespace, path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases` }, {
      upsert: (o) => { this.seeLease(o, false); this.notify(); },
      remove: (o) => { this.seeLease(o, true); this.notify(); },
      error: log,
    });
    try {
      await this.leaseInformer.start();
      await this.nodeInformer.start();
    } catch (e) {
      throw apiError('cannot list the nodes and leases', e);
    }
    // Leases lapse by time, not by an event.
    this.livenessTimer = setInterval(() => this.notify(), 1000);
    this.notify();
  }

  private notify(): void {
    this.admitted = undefined;
    const { admitted, refused } = this.admission();
    this.peerView.update(admitted, refused);
  }

  /** Someone else changed our annotations (or the Node was recreated): write them again. */
  private reassert(v: KubeNodeView): void {
    this.writer.reassert((last) => saysAlready(v, last));
  }

  /** A strategic merge patch of the Node's annotations: only ours, null removes one. */
  private async writeAnnotations(fields: OwnFields): Promise<void> {
    try {
      await this.objects.patch({ apiVersion: 'v1', kind: 'Node', metadata: { name: this.o.nodeName, annotations: annotationPatch(fields) as Record<string, string> } },
        undefined, undefined, AGENT_FIELD_MANAGER, undefined, PatchStrategy.StrategicMergePatch);
    } catch (e) {
      throw apiError(`cannot publish on node '${this.o.nodeName}'`, e);
    }
  }

  publish(fields: OwnFields): Promise<void> {
    return this.writer.publish(fields);
  }

  published(): OwnFields | undefined {
    return this.writer.published();
  }

  async holdLiveness(ttlSeconds: number, holder: Record<string, unknown>, onLost: (e: Error) => void): Promise<LeaseHandle> {
    this.lease = await holdLease(this.o.kc, {
      namespace: this.o.namespace, name: this.o.nodeName, durationSeconds: ttlSeconds, onLost,
      holderIdentity: `${this.o.nodeName}/${String(holder['pid'] ?? process.pid)}`, labels: { 'app.kubernetes.io/name': 'veil' },
    });
    return this.lease;
  }

  close(): void {
    this.nodeInformer?.stop();
    this.leaseInformer?.stop();
    this.lease?.stop();
    if (this.livenessTimer) clearInterval(this.livenessTimer);
  }
}
