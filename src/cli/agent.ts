// veil agent: run the node agent (internal, started by install) and ask one agent about itself.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { openRegistry } from '../control/cluster.js';
import { KUBE_PATHS } from '../agent/kube-paths.js';
import { CONFIG_FLAGS, DEFAULT_AGENT_CONFIG, loadAgentConfig, type ConfigField } from '../host/agent-config.js';
import { AgentClient } from '../agent/agent-client.js';
import { encryptionLine, type Healthz } from '../agent/api.js';
import { agentLogPath, agentPid, restartAgent, startAgent, stopAgent, waitAgentReady } from '../lab/agents.js';
import { VeilError } from '../util/errors.js';
import { checkBuild } from '../lab/agent-build.js';
import { command, group, UsageError, type FlagSpec } from './flags.js';
import { clusterNode } from './node-arg.js';
import { printStructured } from './output.js';
import { formatEncryptStatus } from '../operator/encrypt-status-text.js';

const RESTART_TIMEOUT_MS = 30_000;

/** The config settings as flags of `veil agent run` (--cluster is the common flag). */
const SETTING_FLAGS: Record<string, FlagSpec> = Object.fromEntries(Object.entries(CONFIG_FLAGS).filter(([f]) => f !== 'cluster').map(([flag, field]) =>
  [flag, { type: 'string', multiple: field === 'podCIDRs', value: field === 'podCIDRs' ? 'CIDR' : 'VALUE', help: `the config's ${field}${field === 'podCIDRs' ? ' (repeats)' : ''}` }]));

const runCmd = command({
  name: 'veil agent run',
  summary: 'run the agent in the foreground, as a host does (systemd; in the lab, install)',
  usage: ['veil agent run [--config FILE] [--wireguard-keylog FILE] [--node NAME] [--etcd-endpoints URL,...] [--pod-cidr CIDR]... [setting flags]',
    'veil agent run --kubernetes [--node NAME] [--namespace NS] [--kubeconfig FILE [--context NAME]] [--settings-file F] [--ipsec-keys-dir D] [--api-token-dir D] [--state-dir D] [--run-dir D]'],
  about: `Runs the node agent in the foreground, as a host runs it (deploy/systemd/veil-agent.service;
the lab runs exactly this in each node's namespace). Its settings come from the config file
(default ${DEFAULT_AGENT_CONFIG}), then VEIL_* variables, then these flags. Before it changes
anything it checks CAP_NET_ADMIN, /dev/net/tun, etcd, the install settings and its UDP port; then
it registers its node (or updates its addresses) and refuses when another node claims its IP or
pod CIDR. The key log lets Wireshark decrypt a WireGuard capture.

With --kubernetes it runs as the DaemonSet runs it: its node is the Node named $NODE_NAME (or
--node) in the Kubernetes API (the pod's service account, or --kubeconfig), peers are the other
Nodes whose agents hold their Lease in $POD_NAMESPACE (or --namespace, default veil), and the
settings and the IPsec key are the files the kubelet mounts (defaults: ${KUBE_PATHS.settingsFile},
${KUBE_PATHS.ipsecKeysDir}).`,
  flags: { config: { type: 'string', value: 'FILE', help: `the agent config (default ${DEFAULT_AGENT_CONFIG}, if it exists)` },
    'wireguard-keylog': { type: 'string', value: 'FILE', help: 'write WireGuard session keys for Wireshark' }, ...SETTING_FLAGS,
    kubernetes: { type: 'boolean', help: 'take the node, peers and liveness from the Kubernetes API (the DaemonSet)' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'with --kubernetes: a kubeconfig instead of the pod\'s service account' },
    context: { type: 'string', value: 'NAME', help: 'with --kubeconfig: its context' },
    namespace: { type: 'string', value: 'NS', help: 'with --kubernetes: veil\'s namespace (default $POD_NAMESPACE, else veil)' },
    'settings-file': { type: 'string', value: 'FILE', help: `with --kubernetes: the mounted settings (default ${KUBE_PATHS.settingsFile})` },
    'ipsec-keys-dir': { type: 'string', value: 'DIR', help: `with --kubernetes: the mounted IPsec key Secret (default ${KUBE_PATHS.ipsecKeysDir})` },
    'api-token-dir': { type: 'string', value: 'DIR', help: `with --kubernetes: the mounted API token Secret (default ${KUBE_PATHS.apiTokenDir})` } },
  examples: ['veil agent run --config /etc/veil/agent.yaml',
    'VEIL_ETCD_ENDPOINTS=https://10.0.0.1:2379 veil agent run --node host-a --pod-cidr 10.244.7.0/24',
    'veil agent run --kubernetes --kubeconfig ~/.kube/config --node kind-worker'],
  async run({ values }) {
    const given = values as Record<string, string | string[] | boolean | undefined>;
    const str = (k: string) => given[k] as string | undefined;
    if (given['kubernetes']) {
      const etcdFlag = Object.keys(given).find((k) => given[k] !== undefined && (k === 'config' || k.startsWith('etcd-') || k === 'pod-cidr' || k.startsWith('underlay-')));
      if (etcdFlag) throw new UsageError(`--${etcdFlag} does not go with --kubernetes`, 'on Kubernetes the node, its addresses and pod CIDRs come from its Node object');
      const { kubernetesAgentConfig, runKubernetesAgent } = await import('../agent/kubernetes-agent.js'); // the Kubernetes client only here
      return runKubernetesAgent(kubernetesAgentConfig({
        nodeName: str('node'), namespace: str('namespace'), kubeconfig: str('kubeconfig'), context: str('context'), settingsFile: str('settings-file'),
        ipsecKeysDir: str('ipsec-keys-dir'), apiTokenDir: str('api-token-dir'), stateDir: str('state-dir'), runDir: str('run-dir'), wireguardKeylog: str('wireguard-keylog'),
      }));
    }
    for (const k of ['kubeconfig', 'context', 'namespace', 'settings-file', 'ipsec-keys-dir', 'api-token-dir']) {
      if (given[k] !== undefined) throw new UsageError(`--${k} goes only with --kubernetes`, 'add --kubernetes, or leave it out');
    }
    const config = hostConfigFrom(given);
    const { runHostAgent } = await import('../agent/host-agent.js'); // the agent itself only when it runs
    return runHostAgent(config, { wireguardKeylog: given['wireguard-keylog'] as string | undefined });
  },
});

const stoppedCmd = command({
  name: 'veil agent stopped',
  summary: "the systemd unit's ExecStopPost=: record how the agent ended, mark its node not ready after a failure",
  usage: ['veil agent stopped [--config FILE] [setting flags]'],
  about: `The systemd unit runs this after the agent's process ended (ExecStopPost=), with systemd's
$SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS. It records the end in the agent's state dir (the next
start counts a restart from it and publishes it: RESTARTS in 'veil status'), and when the agent
failed (a crash, kill -9, a refused start) it marks the node not ready in etcd at once, saying how
the agent ended, instead of leaving it ready until its lease lapses. Exits 0 even when etcd cannot be
reached (the lease then lapses within its TTL).`,
  flags: { config: { type: 'string', value: 'FILE', help: `the agent config (default ${DEFAULT_AGENT_CONFIG}, if it exists)` }, ...SETTING_FLAGS },
  examples: ['SERVICE_RESULT=signal EXIT_CODE=killed EXIT_STATUS=KILL veil agent stopped --config /etc/veil/agent.yaml'],
  async run({ values }) {
    const config = hostConfigFrom(values as Record<string, string | string[] | boolean | undefined>);
    const [{ agentStopped }, { hostRegistry }] = await Promise.all([import('../agent/agent-stopped.js'), import('../agent/host-agent.js')]);
    console.log(await agentStopped(config, process.env, () => hostRegistry(config)));
    return 0;
  },
});

/** The host agent's config: the file, then VEIL_* variables, then the setting flags. */
function hostConfigFrom(given: Record<string, string | string[] | boolean | undefined>) {
  const flags: Partial<Record<ConfigField, string | string[]>> = {};
  for (const [flag, field] of Object.entries(CONFIG_FLAGS)) if (given[flag] !== undefined) flags[field] = given[flag] as string | string[];
  return loadAgentConfig({ file: given['config'] as string | undefined, flags });
}

/** status and encrypt status: one of the agent's reports, as text or -o json|yaml. */
function agentReport<T>(sub: string, o: { summary: string; about: string; ask(agent: AgentClient): Promise<T>; text(report: T): string }) {
  const name = `veil agent ${sub}`;
  return command({
    name, summary: o.summary, about: o.about,
    usage: [`${name} NODE [-o json|yaml] [--cluster NAME]`],
    positionals: true,
    output: { choices: ['json', 'yaml'] },
    examples: [`${name} kind-worker`, `${name} kind-worker -o json`],
    async run({ values, positionals }) {
      const { cluster, node } = await clusterNode(values.cluster, positionals[0], `${name} kind-worker`);
      const report = await o.ask(await AgentClient.connect(cluster, node));
      if (values.output) printStructured(report, values.output);
      else process.stdout.write(o.text(report));
      return 0;
    },
  });
}

const status = agentReport('status', {
  summary: 'health and encryption of the agent on NODE',
  about: "The agent's health checks and its encryption line (mode, device, key, port, peers).",
  ask: (a) => a.healthz(),
  text: (h: Healthz) => [
    `Node: ${h.node}`,
    `Agent: ${h.health.state} (pid ${h.pid}, veil ${h.version ?? 'unknown'}, up since ${h.startedAt})`,
    ...h.health.checks.map((c) => `  ${c.name}: ${c.state}${c.message && c.message !== 'OK' ? ` (${c.message})` : ''}`),
    `Encryption: ${encryptionLine(h.encryption)}`,
    '',
  ].join('\n'),
});

const encryptStatus = agentReport('encrypt status', {
  summary: 'the tunnel: interface, keys, peers / SAs, counters',
  about: "The node's tunnel as the agent sees it: interface, keys, peers or SAs, counters.",
  ask: (a) => a.encryptStatus(),
  text: formatEncryptStatus,
});

const logs = command({
  name: 'veil agent logs',
  summary: "the agent's structured log",
  usage: ['veil agent logs NODE [-f] [--cluster NAME]'],
  about: "The agent's structured log (one JSON object per line).",
  positionals: true,
  flags: { follow: { type: 'boolean', short: 'f', help: 'keep printing new lines (Ctrl-C stops)' } },
  examples: ['veil agent logs kind-worker', 'veil agent logs kind-worker -f'],
  async run({ values, positionals }) {
    const { cluster, node } = await clusterNode(values.cluster, positionals[0], 'veil agent logs kind-worker');
    const path = agentLogPath(cluster, node);
    if (!existsSync(path)) throw new VeilError('NO_LOG', `no agent log for ${node} yet`, "is veil installed? ('veil status')");
    if (!values.follow) { process.stdout.write(readFileSync(path, 'utf8')); return 0; }
    const tail = spawn('tail', ['-n', '+1', '-f', path], { stdio: 'inherit' });
    return new Promise((r) => tail.on('exit', (c) => r(c ?? 0)));
  },
});

const restart = command({
  name: 'veil agent restart',
  summary: 'restart the agent on NODE (the datapath is handed over: no packet lost)',
  usage: ['veil agent restart NODE [--build DIR] [--cold] [--cluster NAME]'],
  about: `Restarts the agent on NODE through its supervisor and waits until the new one is ready. The datapath is handed over (TUN queue, UDP socket, sessions, sequence numbers): no packet is lost. Keys and routes survive. --build DIR restarts it into the veil build at DIR (an upgrade or a downgrade, as a host installs a new package and restarts the service); the node runs that build from then on. The datapath is handed over when both builds read the same handover snapshot version; otherwise the new agent logs 'datapath handover not used: cold start' and starts cold. --cold stops the agent and its supervisor and starts both again, as before handovers: a fresh datapath (new WireGuard sessions, IPsec sequence numbers from the persisted marks).`,
  positionals: true,
  flags: {
    cold: { type: 'boolean', help: 'no handover: a fresh datapath (packets are lost for the time it takes)' },
    build: { type: 'string', value: 'DIR', help: "restart into the veil build at DIR (its package root: package.json, dist/, the native addon)" },
  },
  examples: ['veil agent restart kind-worker', 'veil agent restart kind-worker --build /opt/veil-0.2.0', 'veil agent restart kind-worker --cold'],
  async run({ values, positionals }) {
    const { cluster, node } = await clusterNode(values.cluster, positionals[0], 'veil agent restart kind-worker');
    const build = values.build === undefined ? undefined : checkBuild(values.build); // before anything stops
    if (values.cold) await stopAgent(cluster, node);
    const reg = openRegistry(cluster);
    try {
      const since = Date.now();
      const obj = (await reg.get('Node', node))!;
      const before = values.cold ? (startAgent(cluster, obj, build?.root), undefined) : restartAgent(cluster, obj, build?.root);
      const pid = await waitAgentReady(reg, cluster, node, since, RESTART_TIMEOUT_MS, before);
      console.log(`agent on ${node} restarted (pid ${pid}${build ? `, veil ${build.version} from ${build.root}` : ''})`);
    } finally {
      reg.close();
    }
    return 0;
  },
});

/** The agent's pid (exit 1 when none runs): for tests and scripts, not listed in the help. */
const pid = command({
  name: 'veil agent pid',
  usage: ['veil agent pid NODE [--cluster NAME]'],
  positionals: true,
  examples: ['veil agent pid kind-worker'],
  async run({ values, positionals }) {
    const { cluster, node } = await clusterNode(values.cluster, positionals[0], 'veil agent pid kind-worker');
    const p = agentPid(cluster, node);
    if (!p) return 1;
    console.log(p);
    return 0;
  },
});

export const { run } = group({
  name: 'veil agent',
  about: "veil agent: ask one node's agent about itself, or run one",
  commands: {
    status, encrypt: group({ name: 'veil agent encrypt', summary: 'status NODE: the tunnel (interface, keys, peers / SAs, counters)', commands: { status: encryptStatus } }),
    logs, restart, run: runCmd, stopped: stoppedCmd, pid: { ...pid, hidden: true },
  },
  examples: ['veil agent status kind-worker', 'veil agent encrypt status kind-worker -o json', 'veil agent logs kind-worker -f'],
});
