// What `veil install --kubernetes` applies: every object validates against the Kubernetes OpenAPI
// schema of the versions README claims (kubernetes-models 5.1 for Kubernetes 1.36, 4.5 for 1.33),
// the agent gets least-privilege RBAC (no Secret access), and the DaemonSet has what the datapath
// needs. `--dry-run -o yaml` prints exactly these objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_NODE_FLAGS } from '../../src/agent/agent-heap.js';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { applySet, defaultSettings, type Settings } from '../../src/agent/settings.js';
import { IMAGE_CLI, renderManifests, type Manifest } from '../../src/agent/kubernetes-manifests.js';
import { kubernetesAgentConfig } from '../../src/agent/kubernetes-agent.js';

/** The Kubernetes versions README claims, and the schema package generated from each one's OpenAPI spec. */
const SCHEMAS = [
  { kubernetes: '1.36', pkg: 'kubernetes-models' },
  { kubernetes: '1.33', pkg: 'kubernetes-models-1.33' },
];

interface Model { validate(): void }
type ModelClass = new (data: unknown) => Model;

async function modelFor(schema: typeof SCHEMAS[number], m: Manifest): Promise<ModelClass> {
  const mod = await import(`${schema.pkg}/${m.apiVersion}`) as Record<string, ModelClass>;
  const cls = mod[m.kind];
  assert.ok(cls, `${schema.pkg} has ${m.apiVersion} ${m.kind}`);
  return cls;
}

function settings(...sets: string[]): Settings {
  const s = defaultSettings();
  for (const x of sets) applySet(s, x);
  return s;
}

const VARIANTS: [string, Settings][] = [
  ['ipsec', settings('encryption.enabled=true', 'encryption.type=ipsec')],
  ['wireguard', settings('encryption.enabled=true', 'encryption.type=wireguard', 'agent.metricsPort=9090')],
  ['cilium secret', settings('encryption.enabled=true', 'encryption.type=ipsec', 'encryption.ipsec.secretName=cilium-ipsec-keys', 'encryption.ipsec.secretNamespace=kube-system')],
];

for (const schema of SCHEMAS) {
  test(`manifests validate against the Kubernetes ${schema.kubernetes} OpenAPI schema (${schema.pkg})`, async () => {
    for (const [name, s] of VARIANTS) {
      for (const m of renderManifests({ settings: s, image: 'registry.example/veil:0.1.0' })) {
        const Cls = await modelFor(schema, m);
        assert.doesNotThrow(() => new Cls(structuredClone(m)).validate(), `${name}: ${m.kind} ${m.metadata.name}`);
      }
    }
    // The validator does reject what the API server would: a port that is not a number.
    const ds = structuredClone(renderManifests({ settings: VARIANTS[0]![1] }).find((m) => m.kind === 'DaemonSet')!);
    ((ds['spec'] as any).template.spec.containers[0].ports[0]).containerPort = 'metrics';
    const Cls = await modelFor(schema, ds);
    assert.throws(() => new Cls(ds).validate(), /containerPort must be integer/);
  });
}

test('RBAC is least privilege: Nodes get/list/watch/patch, Peers get/list/watch, Leases in its namespace, no Secrets', () => {
  const ms = renderManifests({ settings: VARIANTS[0]![1] });
  const cr = ms.find((m) => m.kind === 'ClusterRole')!;
  assert.deepEqual(cr['rules'], [
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
    { apiGroups: ['network.veil.io'], resources: ['peers'], verbs: ['get', 'list', 'watch'] },
  ]);
  const role = ms.find((m) => m.kind === 'Role')!;
  assert.equal(role.metadata.namespace, 'veil');
  assert.deepEqual(role['rules'], [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] }]);
  assert.ok(!JSON.stringify(ms.filter((m) => /Role/.test(m.kind))).includes('secrets'));
  const crb = ms.find((m) => m.kind === 'ClusterRoleBinding')!;
  assert.deepEqual(crb['subjects'], [{ kind: 'ServiceAccount', name: 'veil-agent', namespace: 'veil' }]);
});

test('an admission policy holds the agent to its own Node\'s network.veil.io/ annotations, in place before the DaemonSet', () => {
  for (const [name, s] of VARIANTS) {
    const ms = renderManifests({ settings: s });
    const kinds = ms.map((m) => m.kind);
    const ns = ms.find((m) => m.kind === 'ServiceAccount')!.metadata.namespace;
    const policy = ms.find((m) => m.kind === 'ValidatingAdmissionPolicy') as any;
    const binding = ms.find((m) => m.kind === 'ValidatingAdmissionPolicyBinding') as any;
    assert.ok(kinds.indexOf('ValidatingAdmissionPolicyBinding') < kinds.indexOf('DaemonSet'), name);
    assert.deepEqual(policy.spec.matchConditions.map((c: any) => c.expression), [`request.userInfo.username == 'system:serviceaccount:${ns}:veil-agent'`], name);
    assert.equal(policy.spec.failurePolicy, 'Fail');
    assert.deepEqual([binding.spec.policyName, binding.spec.validationActions], [policy.metadata.name, ['Deny']]);
  }
});

test('the DaemonSet: host network, NET_ADMIN (NET_RAW too for raw ESP, SYS_NICE for a raised datapath priority or its realtime class) and nothing else, /dev/net/tun, /var/lib/veil, the key Secret as a volume, probes, every node, rolling update', () => {
  for (const [name, s] of VARIANTS) {
    const ds = renderManifests({ settings: s }).find((m) => m.kind === 'DaemonSet')! as any;
    const pod = ds.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(pod.hostNetwork, true, name);
    assert.deepEqual(c.securityContext.capabilities, { add: ['NET_ADMIN', 'SYS_NICE'], drop: ['ALL'] });
    assert.deepEqual(pod.volumes.find((v: any) => v.name === 'tun').hostPath, { path: '/dev/net/tun', type: 'CharDevice' });
    assert.deepEqual(pod.volumes.find((v: any) => v.name === 'state').hostPath, { path: '/var/lib/veil', type: 'DirectoryOrCreate' });
    assert.equal(pod.volumes.find((v: any) => v.name === 'ipsec-keys').secret.secretName, s['encryption.ipsec.secretName']);
    assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: s['agent.metricsPort'], scheme: 'HTTP' });
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: s['agent.metricsPort'], scheme: 'HTTP' });
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(ds.spec.updateStrategy.type, 'RollingUpdate');
    assert.deepEqual(c.env.filter((e: any) => e.valueFrom).map((e: any) => e.valueFrom.fieldRef.fieldPath), ['spec.nodeName', 'metadata.namespace']);
    assert.deepEqual(c.command, ['node', ...AGENT_NODE_FLAGS, IMAGE_CLI, 'agent', 'run', '--kubernetes'], 'node with the agent flags (agent-heap.ts) on its command line');
    assert.equal(c.env.find((e: any) => e.name === 'NODE_OPTIONS'), undefined, 'no NODE_OPTIONS: it refuses --no-memory-reducer');
  }
  // raw ESP: its raw socket needs CAP_NET_RAW, and there is no UDP tunnel port
  const raw = (renderManifests({ settings: settings('encryption.enabled=true', 'encryption.type=ipsec', 'encryption.ipsec.encapsulation=esp') }).find((m) => m.kind === 'DaemonSet') as any).spec.template.spec.containers[0];
  assert.deepEqual(raw.securityContext.capabilities, { add: ['NET_ADMIN', 'NET_RAW', 'SYS_NICE'], drop: ['ALL'] });
  const capsWith = (...sets: string[]) => (renderManifests({ settings: settings(...sets) }).find((m) => m.kind === 'DaemonSet') as any).spec.template.spec.containers[0].securityContext.capabilities;
  assert.deepEqual(capsWith('datapath.priority=0', 'datapath.realtime=false'), { add: ['NET_ADMIN'], drop: ['ALL'] }, 'no raised priority, never realtime: no CAP_SYS_NICE');
  assert.deepEqual(capsWith('datapath.priority=0', 'datapath.realtime=true'), { add: ['NET_ADMIN', 'SYS_NICE'], drop: ['ALL'] }, 'realtime while idle alone needs CAP_SYS_NICE');
  assert.deepEqual(raw.ports.map((p: any) => p.name), ['metrics', 'api']);
  const cilium = renderManifests({ settings: VARIANTS[2]![1] });
  assert.ok(cilium.every((m) => m.kind === 'Namespace' ? false : !m.metadata.namespace || m.metadata.namespace === 'kube-system'), 'with Cilium\'s secret veil runs in kube-system, whose Namespace it does not own');
  assert.ok(!cilium.some((m) => m.kind === 'Namespace'));
});

test('veil install --kubernetes --dry-run -o yaml prints the objects; json too; -o without --dry-run is bad usage', () => {
  const run = (...a: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', 'install', '--kubernetes', ...a], { encoding: 'utf8' });
  const y = run('--encryption', 'wireguard', '--image', 'veil:test', '--dry-run', '-o', 'yaml');
  assert.equal(y.status, 0, y.stderr);
  const docs = parseAllDocuments(y.stdout).map((d) => d.toJSON());
  assert.deepEqual(docs, JSON.parse(JSON.stringify(renderManifests({ settings: settings('encryption.enabled=true', 'encryption.type=wireguard'), image: 'veil:test' }))));
  const j = run('--encryption', 'ipsec', '--dry-run', '-o', 'json');
  assert.equal(JSON.parse(j.stdout).items.length, docs.length);
  const bad = run('--encryption', 'ipsec', '-o', 'yaml', '--kubeconfig', '/nonexistent');
  assert.equal(bad.status, 2, bad.stderr);
  const noEnc = run('--dry-run');
  assert.equal(noEnc.status, 1);
  assert.match(noEnc.stderr, /encryption is not enabled/);
});

test('the DaemonSet gives the agent what `veil agent run --kubernetes` reads: NODE_NAME, POD_NAMESPACE and every default path mounted', () => {
  const ds = renderManifests({ settings: VARIANTS[0]![1] }).find((m) => m.kind === 'DaemonSet')! as any;
  const c = ds.spec.template.spec.containers[0];
  assert.deepEqual(c.command.slice(c.command.indexOf(IMAGE_CLI) + 1), ['agent', 'run', '--kubernetes']);
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, 'from-pod']));
  const cfg = kubernetesAgentConfig({}, env);
  assert.deepEqual([cfg.nodeName, cfg.namespace], ['from-pod', 'from-pod'], 'node and namespace come from the pod');
  const mounts: string[] = c.volumeMounts.map((m: any) => m.mountPath);
  for (const path of [cfg.settingsFile, cfg.ipsecKeysDir, cfg.apiTokenDir, cfg.stateDir, cfg.runDir]) {
    assert.ok(mounts.some((m) => path === m || path.startsWith(`${m}/`)), `${path} is on a volume`);
  }
  const install = c.volumeMounts.find((m: any) => cfg.settingsFile.startsWith(`${m.mountPath}/`));
  assert.equal(ds.spec.template.spec.volumes.find((v: any) => v.name === install.name).configMap.name, 'veil-install');
});

test('veil agent run --kubernetes refuses a missing node name and flags of the etcd agent, saying what to do', () => {
  const run = (env: NodeJS.ProcessEnv, ...a: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', 'agent', 'run', '--kubernetes', ...a], { encoding: 'utf8', env });
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_NAME'));
  const noNode = run(env);
  assert.equal(noNode.status, 1);
  assert.match(noNode.stderr, /no node name: neither --node nor \$NODE_NAME.*spec.nodeName/);
  const mixed = run(env, '--etcd-endpoints', 'http://127.0.0.1:2379');
  assert.equal(mixed.status, 2);
  assert.match(mixed.stderr, /--etcd-endpoints does not go with --kubernetes/);
  const stray = spawnSync(process.execPath, ['dist/src/cli/main.js', 'agent', 'run', '--kubeconfig', '/x'], { encoding: 'utf8', env });
  assert.equal(stray.status, 2);
  assert.match(stray.stderr, /--kubeconfig goes only with --kubernetes/);
});
