// `veil agent run --kubernetes`: the agent as the DaemonSet runs it. Its node is the Node named
// NODE_NAME (the pod's spec.nodeName, through the downward API); peers and liveness go through the
// API server (the pod's service account, or a kubeconfig), and so do the members without an agent
// (Peer resources, peers.network.veil.io); the settings and the secrets are files the kubelet
// mounts. Everything that can refuse does so before anything changes: CAP_NET_ADMIN, /dev/net/tun,
// the settings, the mode's UDP port, the API server and the Node itself.
import { join } from 'node:path';
import { loadKubeConfig } from '../control/kubernetes/kube-connection.js';
import { requireNetAdmin, requireTun, requireUdpPortFree } from '../host/preflight.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { VeilError } from '../util/errors.js';
import { resumeDatapathEarly, runAgent, takeNotifySocket } from './agent.js';
import { stopResumed } from './datapath-handover.js';
import { API_TOKEN_SECRET } from './api-token.js';
import { KubernetesNodeSource } from './kubernetes-node-source.js';
import { KubernetesPeerObjects } from './kubernetes-peer-objects.js';
import { WithExternalPeers } from './external-peers.js';
import { mountedInputs, readSettingsFile } from './mounted-inputs.js';
import { WG_PORT } from './wireguard-mode.js';
import { KUBE_PATHS } from './kube-paths.js';

/** Where the DaemonSet mounts what the agent reads (README: Install on Kubernetes). */
export interface KubernetesAgentConfig {
  nodeName: string;
  /** veil's namespace (its Leases). */
  namespace: string;
  kubeconfig?: string;
  context?: string;
  settingsFile: string;
  ipsecKeysDir: string;
  apiTokenDir: string;
  stateDir: string;
  runDir: string;
  wireguardKeylog?: string;
}

/** The config from flags over the pod's environment (NODE_NAME, POD_NAMESPACE) over the defaults. */
export function kubernetesAgentConfig(flags: Partial<Record<keyof KubernetesAgentConfig, string>>, env: NodeJS.ProcessEnv = process.env): KubernetesAgentConfig {
  const nodeName = flags.nodeName ?? env['NODE_NAME'];
  if (!nodeName) throw new VeilError('BAD_AGENT_CONFIG', 'no node name: neither --node nor $NODE_NAME', 'the DaemonSet sets NODE_NAME from spec.nodeName; by hand, pass --node');
  return {
    nodeName, namespace: flags.namespace ?? env['POD_NAMESPACE'] ?? 'veil', kubeconfig: flags.kubeconfig, context: flags.context,
    settingsFile: flags.settingsFile ?? KUBE_PATHS.settingsFile, ipsecKeysDir: flags.ipsecKeysDir ?? KUBE_PATHS.ipsecKeysDir,
    apiTokenDir: flags.apiTokenDir ?? KUBE_PATHS.apiTokenDir, stateDir: flags.stateDir ?? KUBE_PATHS.stateDir, runDir: flags.runDir ?? KUBE_PATHS.runDir,
    wireguardKeylog: flags.wireguardKeylog,
  };
}

export async function runKubernetesAgent(cfg: KubernetesAgentConfig): Promise<number> {
  const notifySocket = takeNotifySocket();
  const resumed = await resumeDatapathEarly(cfg.nodeName, notifySocket);
  let settings: ReturnType<typeof readSettingsFile>;
  try {
    requireNetAdmin();
    requireTun();
    settings = readSettingsFile(cfg.settingsFile);
    // raw ESP uses no port; a datapath handed over holds its own (this agent goes on with that socket)
    if (!resumed && (settings['encryption.type'] === 'wireguard' || settings['encryption.ipsec.encapsulation'] === 'udp')) await requireUdpPortFree(settings['encryption.type'] === 'wireguard' ? WG_PORT : ESP_IN_UDP_PORT);
  } catch (e) {
    await stopResumed(resumed); // its worker would keep this process from exiting
    throw e;
  }
  const kc = loadKubeConfig({ kubeconfig: cfg.kubeconfig, context: cfg.context });
  // members without an agent: the cluster's Peer resources, admitted as on etcd
  const source = new WithExternalPeers(new KubernetesNodeSource({ kc, nodeName: cfg.nodeName, namespace: cfg.namespace }), new KubernetesPeerObjects(kc));
  const cluster = kc.getCurrentCluster()?.name ?? 'kubernetes';
  return runAgent({
    cluster, node: cfg.nodeName, stateDir: cfg.stateDir, socketPath: join(cfg.runDir, 'agent.sock'), wireguardKeylog: cfg.wireguardKeylog, notifySocket, resumed,
    openInputs: () => mountedInputs(cfg.settingsFile, { [settings['encryption.ipsec.secretName']]: cfg.ipsecKeysDir, [API_TOKEN_SECRET]: cfg.apiTokenDir }),
  }, source);
}
