// veil's Peer objects on Kubernetes: a cluster-scoped custom resource, peers.network.veil.io
// (members that run no veil agent: kernel WireGuard or kernel IPsec hosts, Kilo's Peer). The CRD
// carries a structural schema, so the API server itself refuses what is malformed (a key that is
// not 32 bytes of base64, a port out of range, no allowed IPs) with a 422 that says which field;
// what a schema cannot judge (overlaps with nodes and other peers, host bits) every agent judges
// on admission, as on etcd. The spec is the etcd backend's Peer spec, field for field.
import type { RegistryObject } from '../registry.js';

export const PEER_GROUP = 'network.veil.io';
export const PEER_VERSION = 'v1alpha1';
export const PEER_API_VERSION = `${PEER_GROUP}/${PEER_VERSION}`;
export const PEER_KIND = 'Peer';
export const PEER_PLURAL = 'peers';
export const PEER_CRD_NAME = `${PEER_PLURAL}.${PEER_GROUP}`;
/** The collection's URL path (cluster-scoped). */
export const PEER_PATH = `/apis/${PEER_API_VERSION}/${PEER_PLURAL}`;

/** A WireGuard public key: 32 bytes in base64, whose last character carries no stray bits. */
const WG_KEY_PATTERN = '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$';
const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** The CustomResourceDefinition, as `veil install --kubernetes` applies it. */
export function peerCrd(labels: Record<string, string>): { apiVersion: string; kind: string; metadata: { name: string; labels: Record<string, string> } } & Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: PEER_CRD_NAME, labels: { ...labels } },
    spec: {
      group: PEER_GROUP,
      scope: 'Cluster',
      names: { plural: PEER_PLURAL, singular: 'peer', kind: PEER_KIND, listKind: `${PEER_KIND}List`, categories: ['veil'] },
      versions: [{
        name: PEER_VERSION, served: true, storage: true,
        additionalPrinterColumns: [
          { name: 'Endpoint', type: 'string', jsonPath: '.spec.endpoint.address' },
          { name: 'Port', type: 'integer', jsonPath: '.spec.endpoint.port' },
          { name: 'Allowed IPs', type: 'string', jsonPath: '.spec.allowedIPs' },
          { name: 'Public Key', type: 'string', jsonPath: '.spec.publicKey', priority: 1 },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            description: 'A cluster member that runs no veil agent (kernel WireGuard or kernel IPsec). Every veil node adds it as a peer once admitted: its allowed IPs may overlap no node\'s pod CIDR or address and no other peer\'s.',
            required: ['spec'],
            properties: {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: {
                type: 'object',
                required: ['endpoint', 'allowedIPs'],
                properties: {
                  publicKey: { type: 'string', pattern: WG_KEY_PATTERN, description: 'Its WireGuard public key (wg pubkey); absent for an IPsec-only peer.' },
                  endpoint: {
                    type: 'object', required: ['address', 'port'], description: 'Where the nodes reach it.',
                    properties: {
                      address: { type: 'string', minLength: 2, maxLength: 45, description: 'An IPv4 or IPv6 address.' },
                      port: { type: 'integer', minimum: 1, maximum: 65535 },
                    },
                  },
                  allowedIPs: {
                    type: 'array', minItems: 1, maxItems: 256, 'x-kubernetes-list-type': 'atomic',
                    description: 'CIDRs routed to it through the tunnel (host bits zero), e.g. 10.250.0.1/32.',
                    items: { type: 'string', format: 'cidr', maxLength: 43 },
                  },
                  persistentKeepalive: { type: 'integer', minimum: 0, maximum: 65535, default: 0, description: 'Seconds; 0 off.' },
                  bootID: { type: 'string', pattern: UUID_PATTERN, description: 'IPsec: mixed into its per-tunnel keys in place of a node\'s boot id; default: this object\'s uid.' },
                  ipsecKeyId: { type: 'integer', minimum: 1, maximum: 15, description: 'IPsec: the key id it was last configured with (veil ipsec peer-config writes it).' },
                },
              },
            },
          },
        },
      }],
    },
  };
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Obj : {});

/**
 * A Peer resource as veil's Peer object. Without a bootID its uid stands in: the API server gives
 * every object one, so every agent and `veil ipsec peer-config` derive the same IPsec keys.
 */
export function peerObjectOf(resource: Obj): RegistryObject {
  const m = rec(resource['metadata']);
  const spec = { ...rec(resource['spec']) };
  if (spec['bootID'] === undefined && typeof m['uid'] === 'string') spec['bootID'] = m['uid'];
  return {
    kind: 'Peer',
    metadata: {
      name: String(m['name'] ?? ''), resourceVersion: Number(m['resourceVersion'] ?? 0) || undefined,
      creationTimestamp: typeof m['creationTimestamp'] === 'string' ? m['creationTimestamp'] : undefined,
      labels: m['labels'] as Record<string, string> | undefined, annotations: m['annotations'] as Record<string, string> | undefined,
    },
    spec,
  };
}

/** veil's Peer object as the resource to write (resourceVersion kept: an update is compare-and-swap). */
export function peerResourceOf(obj: RegistryObject): { apiVersion: string; kind: string; metadata: Obj; spec: Obj } {
  const { name, resourceVersion, labels, annotations } = obj.metadata;
  return {
    apiVersion: PEER_API_VERSION, kind: PEER_KIND,
    metadata: { name, ...(resourceVersion ? { resourceVersion: String(resourceVersion) } : {}), ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    spec: { ...(obj.spec ?? {}) },
  };
}
