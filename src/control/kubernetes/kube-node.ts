// What veil reads from and writes on a Kubernetes Node. The kubelet and the node IPAM own
// spec.podCIDRs, status.addresses and status.nodeInfo.bootID; the veil agent owns only its
// annotations (below), written with a strategic merge patch of metadata.annotations.

/** The agent's status (ready, health, encryption, API address), JSON. */
export const AGENT_STATUS_ANNOTATION = 'network.veil.io/agent-status';
/** The encryption key id the agent uses (IPsec: its SPI; Cilium's CiliumNode spec.encryption.key). */
export const ENCRYPTION_KEY_ANNOTATION = 'network.veil.io/encryption-key';

export interface KubeNodeView {
  name: string;
  resourceVersion: string;
  /** Creation time in ms (0 if absent): the older claim wins when two nodes collide. */
  createdMs: number;
  internalIPs: string[];
  podCIDRs: string[];
  bootID?: string;
  annotations: Record<string, string>;
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Obj : {});

/** The fields veil uses of a Node object (as the API returns it), without judging them. */
export function kubeNodeView(node: Obj): KubeNodeView {
  const meta = rec(node['metadata']);
  const spec = rec(node['spec']);
  const status = rec(node['status']);
  const addresses = Array.isArray(status['addresses']) ? status['addresses'].map(rec) : [];
  const podCIDRs = Array.isArray(spec['podCIDRs']) && spec['podCIDRs'].length ? spec['podCIDRs'] : typeof spec['podCIDR'] === 'string' ? [spec['podCIDR']] : [];
  const bootID = rec(status['nodeInfo'])['bootID'];
  const annotations = Object.fromEntries(Object.entries(rec(meta['annotations'])).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  const created = Date.parse(String(meta['creationTimestamp'] ?? ''));
  return {
    name: String(meta['name'] ?? ''),
    resourceVersion: String(meta['resourceVersion'] ?? ''),
    createdMs: Number.isFinite(created) ? created : 0,
    internalIPs: addresses.filter((a) => a['type'] === 'InternalIP' && typeof a['address'] === 'string' && a['address']).map((a) => a['address'] as string),
    podCIDRs: podCIDRs.filter((c): c is string => typeof c === 'string' && c.length > 0),
    bootID: typeof bootID === 'string' && bootID ? bootID.toLowerCase() : undefined,
    annotations,
  };
}

/** The agent status annotation, parsed; undefined when absent or not JSON. */
export function agentStatusAnnotation(v: KubeNodeView): Record<string, unknown> | undefined {
  const raw = v.annotations[AGENT_STATUS_ANNOTATION];
  if (!raw) return undefined;
  try {
    const x: unknown = JSON.parse(raw);
    return typeof x === 'object' && x !== null && !Array.isArray(x) ? x as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

/** The published key id, if a whole number. */
export function encryptionKeyAnnotation(v: KubeNodeView): number | undefined {
  const raw = v.annotations[ENCRYPTION_KEY_ANNOTATION];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
}
