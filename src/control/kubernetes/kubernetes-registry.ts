// A Kubernetes cluster seen through the registry interface, so that the operator's commands
// (status, encryption status, agent status, config view) read it as they read etcd: Nodes become
// node objects (InternalIPs and podCIDRs in spec, the agent's published status and key from its
// annotations), a Lease counts while it is renewed within its duration, and Secrets and
// ConfigMaps are veil's namespace's. It is read-only for those: veil's objects on Kubernetes are
// changed with `veil install --kubernetes` and kubectl, never behind their field managers' backs.
// Peers are the exception: they are the user's own objects (peers.network.veil.io, see
// peer-crd.ts), which `veil peer add/delete` and `veil ipsec peer-config` write as kubectl would.
// The client library (~800 files) is loaded on the first call, so that a command on an etcd
// cluster, or only asking for help, never pays for it.
import type * as k8s from '@kubernetes/client-node';
import type { Kind, LeaseHandle, Registry, RegistryObject, Watch } from '../registry.js';
import { VeilError } from '../../util/errors.js';
import { apiError, apiErrorMessage, apiStatusCode } from './kube-errors.js';
import { agentStatusAnnotation, encryptionKeyAnnotation, kubeNodeView } from './kube-node.js';
import { leaseDurationMs, leaseRenewedAt } from './kube-lease.js';
import { PEER_API_VERSION, PEER_CRD_NAME, PEER_KIND, peerObjectOf, peerResourceOf } from './peer-crd.js';

export interface KubernetesRegistryOptions {
  /** The kubeconfig file (else in-cluster or the default) and context: loaded on the first call. */
  kubeconfig?: string;
  context?: string;
  /** veil's namespace (its Leases, Secrets, ConfigMaps). */
  namespace: string;
}

type Obj = Record<string, unknown> & { metadata?: Record<string, unknown> };

function plain(o: unknown): Obj {
  return JSON.parse(JSON.stringify(o)) as Obj;
}

function meta(o: Obj): RegistryObject['metadata'] {
  const m = o.metadata ?? {};
  return {
    name: String(m['name'] ?? ''), resourceVersion: Number(m['resourceVersion'] ?? 0) || undefined,
    creationTimestamp: typeof m['creationTimestamp'] === 'string' ? m['creationTimestamp'] : undefined,
    labels: m['labels'] as Record<string, string> | undefined, annotations: m['annotations'] as Record<string, string> | undefined,
  };
}

/** A Node as veil's node object: spec.internalIP(s), spec.podCIDR(s), status.agent, spec.encryption.key. */
export function nodeObjectOf(node: Obj): RegistryObject {
  const v = kubeNodeView(node);
  const key = encryptionKeyAnnotation(v);
  const agent = agentStatusAnnotation(v);
  return {
    kind: 'Node', metadata: meta(node),
    spec: { internalIP: v.internalIPs[0], internalIPs: v.internalIPs, podCIDR: v.podCIDRs[0], podCIDRs: v.podCIDRs, ...(key !== undefined ? { encryption: { key } } : {}) },
    status: { ...(agent ? { agent } : {}), ...(v.bootID ? { bootID: v.bootID } : {}) },
  };
}

/** A Lease as veil's lease object while it is renewed within its duration (else undefined: lapsed). */
export function leaseObjectOf(lease: Obj, now = Date.now()): RegistryObject | undefined {
  const renewed = leaseRenewedAt(lease);
  const duration = leaseDurationMs(lease);
  if (renewed === undefined || now - renewed > duration) return undefined;
  const holder = String((lease['spec'] as { holderIdentity?: unknown } | undefined)?.holderIdentity ?? '');
  const pid = Number(holder.split('/')[1]);
  return {
    kind: 'Lease', metadata: meta(lease),
    spec: { holder, ...(Number.isInteger(pid) ? { pid } : {}), renewTime: new Date(renewed).toISOString(), ttlSeconds: duration / 1000 },
  };
}

const GVK: Record<Kind, { apiVersion: string; kind: string; namespaced: boolean }> = {
  Node: { apiVersion: 'v1', kind: 'Node', namespaced: false },
  Peer: { apiVersion: PEER_API_VERSION, kind: PEER_KIND, namespaced: false },
  Lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespaced: true },
  Secret: { apiVersion: 'v1', kind: 'Secret', namespaced: true },
  ConfigMap: { apiVersion: 'v1', kind: 'ConfigMap', namespaced: true },
  Pod: { apiVersion: 'v1', kind: 'Pod', namespaced: true },
};

function gvkOf(kind: Kind): { apiVersion: string; kind: string; namespaced: boolean } {
  return GVK[kind];
}

/** A 404 on the Peer kind: the API server does not know the resource (no CRD), or the object is gone. */
function noPeerResource(e: unknown): VeilError {
  return new VeilError('NO_PEER_CRD', `this Kubernetes cluster does not serve veil's Peer resource (the CRD ${PEER_CRD_NAME}): ${apiErrorMessage(e)}`,
    "install or upgrade veil, which applies the CRD: veil install --kubernetes (or kubectl get crd to check)");
}

/**
 * The client's discovery found no Peer resource (a 404 for the group, or the kind missing from it):
 * not a missing object, a missing CRD.
 */
function isMissingResource(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? '');
  return /Unrecognized API version and kind/.test(msg) || (apiStatusCode(e) === 404 && /Failed to fetch resource metadata/.test(msg));
}

const FIELD_MANAGER = 'veil-cli';

export class KubernetesRegistry implements Registry {
  private client: Promise<k8s.KubernetesObjectApi> | undefined;

  constructor(private readonly o: KubernetesRegistryOptions) {}

  private api(): Promise<k8s.KubernetesObjectApi> {
    this.client ??= (async () => {
      const [{ KubernetesObjectApi }, { loadKubeConfig }] = await Promise.all([import('@kubernetes/client-node'), import('./kube-connection.js')]);
      return KubernetesObjectApi.makeApiClient(loadKubeConfig({ kubeconfig: this.o.kubeconfig, context: this.o.context }));
    })();
    return this.client;
  }

  private convert(kind: Kind, o: Obj): RegistryObject | undefined {
    if (kind === 'Node') return nodeObjectOf(o);
    if (kind === 'Lease') return leaseObjectOf(o);
    if (kind === 'Peer') return peerObjectOf(o);
    // a pod: where it runs and its containers' states (`veil status` reads the agents' restarts there)
    if (kind === 'Pod') return { kind, metadata: meta(o), spec: { nodeName: (o['spec'] as Obj | undefined)?.['nodeName'] }, status: { containerStatuses: (o['status'] as Obj | undefined)?.['containerStatuses'] ?? [] } };
    const out: RegistryObject = { kind, metadata: meta(o) };
    if (o['data']) out.data = o['data'] as Record<string, string>;
    if (typeof o['type'] === 'string') out.type = o['type'];
    return out;
  }

  async get(kind: Kind, name: string): Promise<RegistryObject | undefined> {
    const g = gvkOf(kind);
    const api = await this.api();
    try {
      const o = plain(await api.read({ apiVersion: g.apiVersion, kind: g.kind, metadata: { name, ...(g.namespaced ? { namespace: this.o.namespace } : {}) } }));
      return this.convert(kind, o);
    } catch (e) {
      if (kind === 'Peer' && isMissingResource(e)) throw noPeerResource(e);
      if (apiStatusCode(e) === 404) return undefined;
      throw apiError(`cannot read ${g.kind} ${name}`, e);
    }
  }

  async list(kind: Kind): Promise<RegistryObject[]> {
    const g = gvkOf(kind);
    const api = await this.api();
    try {
      const l = await api.list(g.apiVersion, g.kind, g.namespaced ? this.o.namespace : undefined);
      return l.items.map((i) => this.convert(kind, plain(i))).filter((x): x is RegistryObject => x !== undefined);
    } catch (e) {
      if (kind === 'Peer' && (isMissingResource(e) || apiStatusCode(e) === 404)) throw noPeerResource(e);
      if (apiStatusCode(e) === 404 && g.namespaced) return []; // no such namespace: veil is not installed
      throw apiError(`cannot list ${g.kind}s`, e);
    }
  }

  private readOnly(): never {
    throw new VeilError('READ_ONLY', "this command would write to a Kubernetes cluster's objects, which veil changes only through its installer",
      "use 'veil install --kubernetes' / 'veil uninstall --kubernetes', or kubectl (e.g. kubectl -n veil patch secret ipsec-keys ...)");
  }

  /** Peers only: a POST, as kubectl create does (409: ALREADY_EXISTS). */
  async create(obj: RegistryObject): Promise<RegistryObject> {
    if (obj.kind !== 'Peer') return this.readOnly();
    const api = await this.api();
    try {
      const { metadata: { resourceVersion: _rv, ...meta }, ...rest } = peerResourceOf(obj);
      return peerObjectOf(plain(await api.create({ ...rest, metadata: meta } as k8s.KubernetesObject, undefined, undefined, FIELD_MANAGER)));
    } catch (e) {
      if (isMissingResource(e)) throw noPeerResource(e);
      if (apiStatusCode(e) === 409) throw new VeilError('ALREADY_EXISTS', `peer "${obj.metadata.name}" already exists`, `choose another name, or delete it first: veil peer delete ${obj.metadata.name}`);
      throw apiError(`cannot create peer ${obj.metadata.name}`, e);
    }
  }

  /** Peers only: a PUT with the object's resourceVersion (409: CONFLICT, 404: NOT_FOUND). */
  async update(obj: RegistryObject): Promise<RegistryObject> {
    if (obj.kind !== 'Peer') return this.readOnly();
    const api = await this.api();
    try {
      return peerObjectOf(plain(await api.replace(peerResourceOf(obj) as k8s.KubernetesObject, undefined, undefined, FIELD_MANAGER)));
    } catch (e) {
      if (isMissingResource(e)) throw noPeerResource(e);
      throw apiError(`cannot update peer ${obj.metadata.name}`, e);
    }
  }

  /** Peers only: read, change, compare-and-swap; retried while someone else wrote in between. */
  async mutate(kind: Kind, name: string, fn: (cur: RegistryObject | undefined) => RegistryObject | undefined): Promise<RegistryObject | undefined> {
    if (kind !== 'Peer') return this.readOnly();
    for (let attempt = 0; ; attempt++) {
      const cur = await this.get(kind, name);
      const next = fn(cur === undefined ? undefined : structuredClone(cur));
      if (next === undefined) return cur;
      try {
        return cur ? await this.update({ ...next, metadata: { ...next.metadata, name, resourceVersion: cur.metadata.resourceVersion } }) : await this.create(next);
      } catch (e) {
        const code = (e as VeilError).code;
        if (attempt >= 10 || (code !== 'CONFLICT' && code !== 'ALREADY_EXISTS' && code !== 'NOT_FOUND')) throw e;
      }
    }
  }

  /** Peers only: false when there was none. */
  async delete(kind: Kind, name: string): Promise<boolean> {
    if (kind !== 'Peer') return this.readOnly();
    const api = await this.api();
    try {
      await api.delete({ apiVersion: PEER_API_VERSION, kind: PEER_KIND, metadata: { name } });
      return true;
    } catch (e) {
      if (isMissingResource(e)) throw noPeerResource(e);
      if (apiStatusCode(e) === 404) return false;
      throw apiError(`cannot delete peer ${name}`, e);
    }
  }

  holdLease(): Promise<LeaseHandle> { return this.readOnly(); }

  async revision(): Promise<number> {
    const l = await (await this.api()).list('v1', 'Node');
    return Number(l.metadata?.resourceVersion ?? 0);
  }

  watch(): Watch {
    throw new VeilError('NOT_SUPPORTED', 'watching a Kubernetes cluster through the registry interface is not supported', 'the agent watches Nodes with its informer; use kubectl get -w');
  }

  close(): void { /* stateless HTTP client */ }
}
