// The kubelet as the agents' supervisor on Kubernetes: `veil status` reads each agent pod's
// container status (restarts, running or in CrashLoopBackOff, how it last ended), so that an agent
// that died is not ready at once, although its Lease and its published "ready" outlive it, and every
// node shows its restarts, as the lab's supervisor shows them. The pods are written with kubectl and
// their status with the official client, as the kubelet writes it, on the test API server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { startTlsApiServer } from '../kube-api/tls-api-server.js';
import { kubectlAsync, runAsync } from '../kube-api/kubectl.js';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { AGENT_STATUS_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';
import { renderManifests } from '../../src/agent/kubernetes-manifests.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { podSupervision } from '../../src/operator/agent-pod-supervision.js';
import type { RegistryObject } from '../../src/control/registry.js';
import type { StatusReport } from '../../src/operator/cluster-status.js';

const agentPod = (node: string, containerStatuses: unknown[], name = 'veil-agent'): RegistryObject =>
  ({ kind: 'Pod', metadata: { name: `${name}-${node}`, labels: { 'app.kubernetes.io/name': name } }, spec: { nodeName: node }, status: { containerStatuses } });

test('the agent pods\' container statuses give each node its restarts, whether it runs, and how it last ended', () => {
  const s = podSupervision([
    agentPod('a', [{ name: 'agent', restartCount: 0, state: { running: { startedAt: '2026-12-02T20:00:00Z' } } }]),
    agentPod('b', [{ name: 'agent', restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137, finishedAt: '2026-12-02T20:01:00Z' } } }]),
    agentPod('c', [{ name: 'agent', restartCount: 1, state: { terminated: { exitCode: 1, reason: 'Error', finishedAt: '2026-12-02T20:02:00Z' } } }]),
    agentPod('d', []), // scheduled, no container started yet
    agentPod('e', [{ name: 'agent', restartCount: 9, state: {} }], 'someone-else'),
  ]);
  assert.deepEqual([...s.keys()].sort(), ['a', 'b', 'c']);
  assert.deepEqual(s.get('a'), { restarts: 0, state: 'running' });
  assert.deepEqual(s.get('b'), { restarts: 3, state: 'backoff', waitingReason: 'CrashLoopBackOff', lastExit: { code: null, signal: 'SIGKILL', at: '2026-12-02T20:01:00Z' } });
  assert.deepEqual(s.get('c'), { restarts: 1, state: 'backoff', lastExit: { code: 1, signal: null, at: '2026-12-02T20:02:00Z' } });
});

let server: TestApiServer;
let dir: string;
let kubeconfig: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-podsup-'));
  ({ server, kubeconfig } = await startTlsApiServer(dir));
  env = { ...process.env, VEIL_HOME: join(dir, 'home'), VEIL_CLUSTER: 'k8s' };
  const add = await runAsync(process.execPath, ['dist/src/cli/main.js', 'cluster', 'add', 'k8s', '--kubernetes', '--kubeconfig', kubeconfig], env);
  assert.equal(add.status, 0, add.stderr);
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('veil status on Kubernetes: an agent whose container died is not ready although its Lease lives, with how it died, the kubelet\'s backoff and its restarts', { timeout: 60_000 }, async () => {
  const settings = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' as const };
  const nodes = ['k1', 'k2'];
  const pid = (i: number) => 4000 + i;
  const docs = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'veil' } },
    renderManifests({ settings }).find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'veil-install'),
    ...nodes.flatMap((n, i) => [
      // no API address published: status asks no agent over the network
      { apiVersion: 'v1', kind: 'Node', metadata: { name: n, annotations: { [AGENT_STATUS_ANNOTATION]: JSON.stringify({ ready: true, pid: pid(i), health: { state: 'Ok', problems: [] } }) } },
        spec: { podCIDRs: [`10.244.${i}.0/24`] }, status: { addresses: [{ type: 'InternalIP', address: `127.0.1.${i + 2}` }] } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: `veil-agent-${n}`, namespace: 'veil', labels: { 'app.kubernetes.io/name': 'veil-agent', 'app.kubernetes.io/part-of': 'veil' } },
        spec: { nodeName: n, containers: [{ name: 'agent', image: 'veil:test' }] } },
    ]),
  ];
  const f = join(dir, 'objects.yaml');
  writeFileSync(f, docs.map((d) => toYaml(d)).join('---\n'));
  const created = await kubectlAsync(kubeconfig, ['create', '--validate=false', '-f', f]);
  assert.equal(created.status, 0, created.stderr);
  const kc = loadKubeConfig({ kubeconfig });
  // both agents' Leases are live (k2's agent was killed a moment ago: its Lease has not lapsed yet)
  const coord = kc.makeApiClient(k8s.CoordinationV1Api);
  for (const [i, n] of nodes.entries()) {
    await coord.createNamespacedLease({ namespace: 'veil', body: { metadata: { name: n, namespace: 'veil' }, spec: { holderIdentity: `${n}/${pid(i)}`, leaseDurationSeconds: 60, renewTime: new k8s.V1MicroTime() } } });
  }
  // the kubelet's report: k1 runs; k2 was killed (137) three times and is in CrashLoopBackOff
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const diedMs = Date.now() - 5000;
  const died = new Date(diedMs).toISOString();
  const statuses: Record<string, unknown[]> = {
    k1: [{ name: 'agent', ready: true, restartCount: 0, image: 'veil:test', imageID: '', state: { running: { startedAt: died } } }],
    k2: [{ name: 'agent', ready: false, restartCount: 3, image: 'veil:test', imageID: '', state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container' } }, lastState: { terminated: { exitCode: 137, reason: 'Error', finishedAt: died } } }],
  };
  for (const n of nodes) {
    await core.patchNamespacedPodStatus({ name: `veil-agent-${n}`, namespace: 'veil', body: { status: { phase: 'Running', containerStatuses: statuses[n] } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  }
  assert.equal((await kubectlAsync(kubeconfig, ['-n', 'veil', 'get', 'pod', 'veil-agent-k2', '-o', 'jsonpath={.status.containerStatuses[0].restartCount}'])).stdout, '3', 'kubectl reads the status back');

  const r = await runAsync(process.execPath, ['dist/src/cli/main.js', 'status', '-o', 'json'], env);
  const report = JSON.parse(r.stdout) as StatusReport;
  const k1 = report.nodes.find((n) => n.name === 'k1')!, k2 = report.nodes.find((n) => n.name === 'k2')!;
  assert.deepEqual({ running: k1.running, ready: k1.ready, restarts: k1.restarts }, { running: true, ready: true, restarts: 0 });
  assert.deepEqual({ running: k2.running, ready: k2.ready, restarts: k2.restarts }, { running: false, ready: false, restarts: 3 }, 'dead although its Lease lives');
  // "Ns ago" counts from the kubelet's finishedAt: at least the 5 s written, at most what passed
  // until status answered (a loaded machine takes seconds between them; no fixed bound)
  const agoMax = Math.ceil((Date.now() - diedMs) / 1000);
  const killed = k2.errors.map((e) => /^agent not running \(pid 4001 is gone\): it was killed by SIGKILL (\d+)s ago; the kubelet restarts it \(CrashLoopBackOff\); restarts: 3$/.exec(e)).find(Boolean);
  assert.ok(killed, k2.errors.join('\n'));
  const ago = Number(killed[1]);
  assert.ok(ago >= 4 && ago <= agoMax, `killed ${ago}s ago: between 4 s and the ${agoMax} s since finishedAt`);
  assert.equal(report.agents.ready, 1);
  assert.notEqual(r.status, 0, 'status fails while an agent is down');
  const text = await runAsync(process.execPath, ['dist/src/cli/main.js', 'status'], env);
  assert.match(text.stdout, /^\s*k2\s+\S+\s+3\s/m, `the RESTARTS column: ${text.stdout}`);
});
