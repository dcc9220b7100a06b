// A lab whose nodes live in a (test) Kubernetes API server, for the e2e tests of the Kubernetes node
// source: the API server runs in the lab's control-plane namespace (veil-<c>_etcd1, on the lab's
// underlay, so agents reach it as pods reach a real one) with TLS and a bearer token; each lab node
// gets a Node object as a kubelet would register it (InternalIP, podCIDRs, nodeInfo.bootID); each
// node's agent runs `veil agent run --kubernetes` in the node's namespace with the ConfigMap and
// Secrets projected into directories as the kubelet mounts them. Each agent authenticates with a
// token of its own that the API server maps to what a pod-bound ServiceAccount token is on
// Kubernetes 1.30+ (veil-agent, its node in the user extra), so veil's admission policy, installed
// with the cluster, holds it to its own Node. Every process is recorded in
// the lab's pid records, so `veil lab down` stops them.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify as toYaml } from 'yaml';
import { nodeStateDir } from '../../src/agent/state-paths.js';
import { BOOT_ID_FILE } from '../../src/agent/node-source.js';
import { renderConfig, type Settings } from '../../src/agent/settings.js';
import { renderManifests } from '../../src/agent/kubernetes-manifests.js';
import { API_TOKEN_SECRET } from '../../src/agent/api-token.js';
import { randomBytes } from 'node:crypto';
import type { RegistryObject } from '../../src/control/registry.js';
import { etcdNetns } from '../../src/lab/names.js';
import { nodeSpec } from '../../src/lab/objects.js';
import { agentPidName } from '../../src/lab/agents.js';
import { registerPid, unregisterPid } from '../../src/lab/pids.js';
import { stopProcesses } from '../../src/lab/pids.js';
import { KubeletVolumes, apiControl } from './kubelet-volumes.js';
import { kubectlPath, makeApiServerCerts, podTokenIdentity, TEST_TOKEN, writeKubeconfig } from './kubectl.js';
import { AGENT_NAME } from '../../src/agent/kubernetes-manifests.js';
import { nodeWritePolicy } from '../../src/agent/node-write-policy.js';

const MAIN_JS = resolve('dist/src/cli/main.js');
const SERVER_JS = resolve('dist/test/kube-api/main.js');
export const API_PORT = 6443;
export const NAMESPACE = 'veil';

export class KubeLab {
  readonly dir: string;
  readonly socket: string;
  readonly kubeconfig: string;
  private volumes?: KubeletVolumes;
  private apiPid?: number;
  private apiUrl = '';
  private ca = '';

  constructor(readonly cluster: string, readonly home: string, readonly nodes: RegistryObject[], readonly apiAddress: string) {
    this.dir = join(home, 'kube');
    this.socket = join(this.dir, 'apiserver.sock');
    this.kubeconfig = join(this.dir, 'kubeconfig');
  }

  get apiNetns(): string {
    return etcdNetns(this.cluster, 0);
  }

  /** Starts the API server in the control-plane namespace; resolves when it listens. */
  async startApiServer(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const certs = makeApiServerCerts(this.dir, [this.apiAddress]);
    this.apiUrl = `https://${this.apiAddress}:${API_PORT}`;
    this.ca = certs.ca;
    writeKubeconfig(this.kubeconfig, this.apiUrl, certs.ca);
    const identities = join(this.dir, 'identities.json');
    writeFileSync(identities, JSON.stringify(Object.fromEntries(this.nodes.map((n) => [this.agentToken(n.metadata.name), podTokenIdentity(NAMESPACE, AGENT_NAME, n.metadata.name)]))), { mode: 0o600 });
    const log = openSync(join(this.dir, 'apiserver.log'), 'a');
    const child = spawn('ip', ['netns', 'exec', this.apiNetns, process.execPath, SERVER_JS, '--listen', `${this.apiAddress}:${API_PORT}`,
      '--socket', this.socket, '--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--token', TEST_TOKEN, '--identities', identities, '--bookmark-ms', '1000'],
    { stdio: ['ignore', 'pipe', log], detached: true });
    closeSync(log);
    this.apiPid = child.pid!;
    registerPid(this.cluster, 'kube-apiserver', child.pid!);
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error('the test API server did not start in 20 s')), 20_000);
      createInterface({ input: child.stdout! }).once('line', () => { clearTimeout(t); res(); });
      child.once('exit', (code) => rej(new Error(`the test API server exited (${code}): see ${join(this.dir, 'apiserver.log')}`)));
    });
    child.stdout!.destroy();
    child.unref();
  }

  /** The token of a node's agent pod (its bound ServiceAccount token). */
  private agentToken(node: string): string {
    return `veil-agent-token-${node}`;
  }

  /** What the API server wrote to its log (its errors), for a failing test's report. */
  apiServerLog(): string {
    try { return readFileSync(join(this.dir, 'apiserver.log'), 'utf8'); } catch { return ''; }
  }

  async stopApiServer(): Promise<void> {
    this.volumes?.stop();
    if (this.apiPid) await stopProcesses([this.apiPid], 3000);
    unregisterPid(this.cluster, 'kube-apiserver');
  }

  /** kubectl against the API server, from inside the control-plane namespace, as the admin or (asNode) as that node's agent. */
  kubectl(args: string[], input?: string, asNode?: string): SpawnSyncReturns<string> {
    const kubeconfig = asNode ? this.agentKubeconfig(asNode) : this.kubeconfig;
    return spawnSync('ip', ['netns', 'exec', this.apiNetns, kubectlPath(), '--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input, timeout: 30_000 });
  }

  /** The kubeconfig of a node's agent pod: its own token. */
  private agentKubeconfig(node: string): string {
    return writeKubeconfig(join(this.dir, `kubeconfig-${node}`), this.apiUrl, this.ca, this.agentToken(node));
  }

  kubectlOk(args: string[], input?: string): string {
    const r = this.kubectl(args, input);
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
    return r.stdout;
  }

  /** The Nodes (as their kubelets register them), the Peer CRD and veil's Namespace (as install applies them), the IPsec key Secret and the settings ConfigMap. */
  registerCluster(ipsecKeys: string, settings: Settings): void {
    const crd = renderManifests({ settings }).find((m) => m.kind === 'CustomResourceDefinition')!;
    const docs: unknown[] = [crd, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } }];
    for (const n of this.nodes) {
      const s = nodeSpec(n);
      docs.push({
        apiVersion: 'v1', kind: 'Node', metadata: { name: n.metadata.name, labels: { 'kubernetes.io/hostname': n.metadata.name, 'kubernetes.io/os': 'linux' } },
        spec: { podCIDR: s.podCIDR, podCIDRs: [s.podCIDR] },
        status: {
          addresses: [{ type: 'InternalIP', address: s.internalIP }, { type: 'Hostname', address: n.metadata.name }],
          nodeInfo: { bootID: readFileSync(s.bootIDFile, 'utf8').trim(), kubeletVersion: 'v1.32.0', operatingSystem: 'linux', architecture: 'amd64' },
        },
      });
    }
    docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ipsec-keys', namespace: NAMESPACE }, type: 'Opaque', stringData: { keys: ipsecKeys } });
    docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: API_TOKEN_SECRET, namespace: NAMESPACE }, type: 'Opaque', stringData: { token: randomBytes(32).toString('base64url') } });
    docs.push(this.settingsConfigMap(settings));
    docs.push(this.agentConfigMap(settings));
    // what `veil install --kubernetes` puts in place before the DaemonSet: each agent writes only its own Node
    docs.push(...nodeWritePolicy(NAMESPACE, AGENT_NAME, {}));
    // create, not apply: a kubelet POSTs its Node with its status
    this.kubectlOk(['create', '--validate=false', '-f', '-'], docs.map((d) => toYaml(d)).join('---\n'));
  }

  private settingsConfigMap(settings: Settings): unknown {
    return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'veil-install', namespace: NAMESPACE }, data: { 'settings.json': JSON.stringify(settings) } };
  }

  private agentConfigMap(settings: Settings): unknown {
    return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'veil-config', namespace: NAMESPACE }, data: renderConfig(settings) };
  }

  setSettings(settings: Settings): void {
    this.kubectlOk(['apply', '--server-side', '--validate=false', '--field-manager', 'veil', '-f', '-'], [this.settingsConfigMap(settings), this.agentConfigMap(settings)].map((d) => toYaml(d)).join('---\n'));
  }

  /** The veil CLI run where the API server and the node addresses are reachable (the control-plane namespace). */
  veil(args: string[], env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
    return spawnSync('ip', ['netns', 'exec', this.apiNetns, process.execPath, MAIN_JS, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  }

  private mounts(node: string): { settings: string; ipsec: string; token: string } {
    const base = join(this.dir, 'pods', node);
    return { settings: join(base, 'install'), ipsec: join(base, 'ipsec-keys'), token: join(base, 'api-token') };
  }

  /** The kubelet's volume projection for every node's agent pod, kept in step until stopApiServer. */
  async startVolumes(): Promise<void> {
    this.volumes?.stop();
    this.volumes = new KubeletVolumes(this.socket, this.nodes.flatMap((n) => {
      const m = this.mounts(n.metadata.name);
      return [
        { kind: 'ConfigMap' as const, namespace: NAMESPACE, name: 'veil-install', dir: m.settings },
        { kind: 'Secret' as const, namespace: NAMESPACE, name: 'ipsec-keys', dir: m.ipsec },
        { kind: 'Secret' as const, namespace: NAMESPACE, name: API_TOKEN_SECRET, dir: m.token },
      ];
    }));
    await this.volumes.syncOnce();
    this.volumes.start();
  }

  /** Starts a node's agent as the DaemonSet's pod would run it. */
  startAgent(node: RegistryObject): number {
    const name = node.metadata.name;
    const s = nodeSpec(node);
    const state = nodeStateDir(this.cluster, name);
    mkdirSync(state, { recursive: true });
    const m = this.mounts(name);
    mkdirSync(m.token, { recursive: true });
    const kubeconfig = this.agentKubeconfig(name);
    const log = openSync(join(state, 'agent.log'), 'a');
    const script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"';
    const child = spawn('ip', ['netns', 'exec', s.netns, 'sh', '-c', script, 'veil-agent', s.bootIDFile, BOOT_ID_FILE,
      process.execPath, MAIN_JS, 'agent', 'run', '--kubernetes', '--kubeconfig', kubeconfig, '--node', name, '--namespace', NAMESPACE,
      '--settings-file', join(m.settings, 'settings.json'), '--ipsec-keys-dir', m.ipsec, '--api-token-dir', m.token, '--state-dir', state, '--run-dir', state],
    { detached: true, stdio: ['ignore', log, log], env: { ...process.env, NODE_NAME: '', POD_NAMESPACE: '' } });
    closeSync(log);
    child.unref();
    registerPid(this.cluster, agentPidName(name), child.pid!);
    return child.pid!;
  }

  async stopAgent(node: string, pid: number): Promise<void> {
    await stopProcesses([pid], 5000);
    unregisterPid(this.cluster, agentPidName(node));
  }

  /** A Node as the API server holds it now. */
  node(name: string): { metadata: { annotations?: Record<string, string> } } | undefined {
    const r = this.kubectl(['get', 'node', name, '-o', 'json']);
    return r.status === 0 ? JSON.parse(r.stdout) : undefined;
  }

  control(name: 'hold-watches' | 'hold-watches?resource=nodes' | 'expire-watches' | 'compact' | 'watches'): Promise<unknown> {
    return apiControl(this.socket, name).catch((e: Error) => {
      let alive = false;
      try { process.kill(this.apiPid!, 0); alive = true; } catch { /* gone */ }
      throw new Error(`test control ${name}: ${e.message} (the API server ${alive ? 'runs' : 'is gone'}; its log: ${this.apiServerLog().trim() || 'empty'})`);
    });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

