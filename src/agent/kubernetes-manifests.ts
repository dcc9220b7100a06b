// What `veil install --kubernetes` puts in a cluster, rendered from the settings (pure): the Peer
// CRD (members without an agent), RBAC, settings, the DaemonSet. The agent gets the least it uses:
// nodes get/list/watch/patch (its Node's annotations) cluster-wide, held to its own Node's
// network.veil.io/ annotations by an admission policy, peers get/list/watch, and Leases in its own
// namespace; no Secret access: the IPsec key and the API token come as volumes.
// veil runs in the namespace of its IPsec Secret (default veil; kube-system when it uses Cilium's
// cilium-ipsec-keys), because a pod can mount only Secrets of its own namespace.
import { API_TOKEN_SECRET } from './api-token.js';
import { AGENT_CONFIGMAP, INSTALL_CONFIGMAP } from './install-state.js';
import { KUBE_PATHS } from './kube-paths.js';
import { AGENT_NODE_FLAGS } from './agent-heap.js';
import { renderConfig, type Settings } from './settings.js';
import { WG_PORT } from './wireguard-mode.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { nodeWritePolicy } from './node-write-policy.js';
import { PEER_GROUP, PEER_PLURAL, peerCrd } from '../control/kubernetes/peer-crd.js';

export const DEFAULT_NAMESPACE = 'veil';
export const AGENT_NAME = 'veil-agent';
export const FIELD_MANAGER = 'veil';
export const DEFAULT_IMAGE = 'veil:0.1.0';
/** Where the image (the repository's Dockerfile) puts veil's CLI; `veil` on its PATH links to it. */
export const IMAGE_CLI = '/opt/veil/dist/src/cli/main.js';

export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, unknown>;

export interface ManifestOptions {
  settings: Settings;
  /** The agent image (built from the repository's Dockerfile). */
  image?: string;
}

/** Where veil runs: its IPsec Secret's namespace, else veil. */
export function installNamespace(s: Settings): string {
  return s['encryption.ipsec.secretNamespace'] || DEFAULT_NAMESPACE;
}

const LABELS = { 'app.kubernetes.io/name': 'veil', 'app.kubernetes.io/part-of': 'veil', 'app.kubernetes.io/managed-by': 'veil' };
const AGENT_LABELS = { 'app.kubernetes.io/name': AGENT_NAME, 'app.kubernetes.io/part-of': 'veil' };

/** The objects in apply order (the CRD and a Namespace before what uses them, RBAC before the DaemonSet). */
export function renderManifests(o: ManifestOptions): Manifest[] {
  const s = o.settings;
  const ns = installNamespace(s);
  const meta = (name: string, namespaced = true) => ({ name, ...(namespaced ? { namespace: ns } : {}), labels: { ...LABELS } });
  const udpPort = s['encryption.type'] === 'wireguard' ? WG_PORT : ESP_IN_UDP_PORT;
  // raw ESP (IP protocol 50): a raw socket, which needs CAP_NET_RAW, and no UDP port
  const rawEsp = s['encryption.type'] === 'ipsec' && s['encryption.ipsec.encapsulation'] === 'esp';
  const probe = (path: string) => ({ httpGet: { path, port: s['agent.metricsPort'], scheme: 'HTTP' }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 });
  const out: Manifest[] = [peerCrd(LABELS)];
  if (ns !== 'kube-system') out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: meta(ns, false) });
  out.push(
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(AGENT_NAME) },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(AGENT_NAME, false),
      // its own Node's annotations (patch) and every Node's addresses (get/list/watch); the Peers, read only
      rules: [
        { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
        { apiGroups: [PEER_GROUP], resources: [PEER_PLURAL], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: meta(AGENT_NAME, false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: AGENT_NAME },
      subjects: [{ kind: 'ServiceAccount', name: AGENT_NAME, namespace: ns }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(AGENT_NAME),
      // liveness: one Lease per node, in veil's namespace only
      rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: meta(AGENT_NAME),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: AGENT_NAME },
      subjects: [{ kind: 'ServiceAccount', name: AGENT_NAME, namespace: ns }],
    },
    // what RBAC cannot say: only its own Node, only veil's annotations (before any agent runs)
    ...nodeWritePolicy(ns, AGENT_NAME, LABELS),
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(INSTALL_CONFIGMAP), data: { 'settings.json': JSON.stringify(s) } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(AGENT_CONFIGMAP), data: renderConfig(s) },
    {
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: meta(AGENT_NAME),
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': AGENT_NAME } },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...AGENT_LABELS } },
          spec: {
            serviceAccountName: AGENT_NAME,
            hostNetwork: true,
            dnsPolicy: 'ClusterFirstWithHostNet',
            priorityClassName: 'system-node-critical',
            // on every node, whatever its taints: a node without the agent would send plaintext
            tolerations: [{ operator: 'Exists' }],
            terminationGracePeriodSeconds: 30,
            containers: [{
              name: 'agent',
              image: o.image ?? DEFAULT_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              // node with the agent's flags on its command line (agent-heap.ts: NODE_OPTIONS refuses one)
              command: ['node', ...AGENT_NODE_FLAGS, IMAGE_CLI, 'agent', 'run', '--kubernetes'],
              env: [
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              ],
              ports: [
                { name: 'metrics', containerPort: s['agent.metricsPort'], protocol: 'TCP' },
                { name: 'api', containerPort: s['agent.apiPort'], protocol: 'TCP' },
                ...(rawEsp ? [] : [{ name: 'tunnel', containerPort: udpPort, protocol: 'UDP' }]),
              ],
              livenessProbe: { ...probe('/healthz'), initialDelaySeconds: 10 },
              readinessProbe: { ...probe('/readyz'), initialDelaySeconds: 2 },
              resources: { requests: { cpu: '100m', memory: '128Mi' } },
              securityContext: {
                // TUN, routes and rules: CAP_NET_ADMIN; raw ESP's socket: CAP_NET_RAW; the datapath
                // worker's raised priority (datapath.priority < 0) and realtime class (datapath.realtime): CAP_SYS_NICE; nothing else
                capabilities: { add: ['NET_ADMIN', ...(rawEsp ? ['NET_RAW'] : []), ...(s['datapath.priority'] < 0 || s['datapath.realtime'] ? ['SYS_NICE'] : [])], drop: ['ALL'] },
                runAsUser: 0,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
              },
              volumeMounts: [
                { name: 'tun', mountPath: '/dev/net/tun' },
                { name: 'state', mountPath: KUBE_PATHS.stateDir },
                { name: 'run', mountPath: KUBE_PATHS.runDir },
                { name: 'tmp', mountPath: '/tmp' },
                { name: 'install', mountPath: KUBE_PATHS.settingsFile.replace(/\/[^/]+$/, ''), readOnly: true },
                { name: 'ipsec-keys', mountPath: KUBE_PATHS.ipsecKeysDir, readOnly: true },
                { name: 'api-token', mountPath: KUBE_PATHS.apiTokenDir, readOnly: true },
              ],
            }],
            volumes: [
              { name: 'tun', hostPath: { path: '/dev/net/tun', type: 'CharDevice' } },
              { name: 'state', hostPath: { path: KUBE_PATHS.stateDir, type: 'DirectoryOrCreate' } },
              { name: 'run', emptyDir: {} },
              { name: 'tmp', emptyDir: {} },
              { name: 'install', configMap: { name: INSTALL_CONFIGMAP } },
              // optional: WireGuard needs no key Secret; a missing one is reported by the agent, not by a stuck pod
              { name: 'ipsec-keys', secret: { secretName: s['encryption.ipsec.secretName'], optional: true } },
              { name: 'api-token', secret: { secretName: API_TOKEN_SECRET, optional: true } },
            ],
          },
        },
      },
    },
  );
  return out;
}
