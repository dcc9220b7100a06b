// The lab end to end, through the CLI: 4 nodes, its etcd refusing a node's user any object but its
// own, pods on two of them, ping both ways, the plaintext ICMP seen on a node's underlay, and a
// `lab down` that leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerPid } from '../../src/lab/pids.js';
import { clusterEtcdOptions, openRegistry } from '../../src/control/cluster.js';
import { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { labNodeEtcdPasswordFile } from '../../src/lab/lifecycle.js';
import { isVeilError } from '../../src/util/errors.js';
import { ok, veilCli } from './cli.js';

const CLUSTER = `tlabe2e-${process.pid}`; // a run cut off mid-test must not collide with the next
const OVERLAPPING = `tlabe2e2-${process.pid}`;
const home = mkdtempSync(join(tmpdir(), 'veil-t-lab-'));
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home };
delete env['VEIL_CLUSTER'];

const veil = veilCli(env, 60_000);
const ourNetns = () => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n')
  .map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`veil-${CLUSTER}_`));
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');

before(() => { process.env['VEIL_HOME'] = home; });
after(() => {
  veil('lab', 'down', '--name', CLUSTER);
  rmSync(home, { recursive: true, force: true });
});

test('e2e lab: up, its etcd refusing a node another node\'s object, pods, plaintext ping seen on the underlay, down leaves nothing', { timeout: 180_000 }, async () => {
  ok(veil('lab', 'up', '--name', CLUSTER, '--nodes', '4'));
  assert.equal(readFileSync(join(home, 'current-cluster'), 'utf8').trim(), CLUSTER);
  assert.deepEqual(ourNetns().sort(), ['control-plane', 'etcd1', 'fabric', 'worker', 'worker2', 'worker3'].map((s) => `veil-${CLUSTER}_${s}`).sort());
  // the control plane: a real etcd in its own namespace at the top of the underlay, the CLI on its unix socket
  assert.match(ok(veil('lab', 'node-exec', `${CLUSTER}-worker`, '--', 'ping', '-c', '1', '-W', '2', '172.18.255.254')), /1 received/);
  assert.match(readFileSync(join(home, 'config'), 'utf8'), new RegExp(`unix://${home}/clusters/${CLUSTER}/etcd/veil-etcd-0:2379`));

  const nodes = JSON.parse(ok(veil('lab', 'get', 'nodes', '-o', 'json'))).items;
  assert.deepEqual(nodes.map((n: { metadata: { name: string } }) => n.metadata.name),
    [`${CLUSTER}-control-plane`, `${CLUSTER}-worker`, `${CLUSTER}-worker2`, `${CLUSTER}-worker3`]);
  const worker = nodes[1];
  assert.deepEqual({ ip: worker.spec.internalIP, cidr: worker.spec.podCIDR, ns: worker.spec.netns, dev: worker.spec.underlayInterface, mtu: worker.spec.mtu },
    { ip: '172.18.0.3', cidr: '10.244.1.0/24', ns: `veil-${CLUSTER}_worker`, dev: 'eth0', mtu: 1500 });
  const bootIds = nodes.map((n: { spec: { bootIDFile: string } }) => readFileSync(n.spec.bootIDFile, 'utf8').trim());
  assert.equal(new Set(bootIds).size, 4, 'each node has its own boot id');

  // etcd runs with auth: a client without credentials may write nothing; worker's own etcd user
  // (its password in worker's state dir, where its agent reads it) writes its own Node, and etcd
  // refuses it worker2's
  const { endpoints } = clusterEtcdOptions(CLUSTER);
  const anonymous = new EtcdRegistry({ cluster: CLUSTER, endpoints });
  await assert.rejects(anonymous.mutate('Node', `${CLUSTER}-worker`, (cur) => cur), /user name is empty|permission denied/, 'no write without credentials');
  anonymous.close();
  const asWorker = new EtcdRegistry({ cluster: CLUSTER, endpoints, username: `veil-node/${CLUSTER}/${CLUSTER}-worker`, passwordFile: labNodeEtcdPasswordFile(CLUSTER, `${CLUSTER}-worker`) });
  try {
    const mark = (cur: RegistryObject | undefined) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { ...cur.metadata.annotations, 'network.veil.io/test': 'own' } } };
    await asWorker.mutate('Node', `${CLUSTER}-worker`, mark);
    assert.equal((await asWorker.get('Node', `${CLUSTER}-worker`))?.metadata.annotations?.['network.veil.io/test'], 'own');
    const other = await asWorker.get('Node', `${CLUSTER}-worker2`);
    await assert.rejects(asWorker.mutate('Node', `${CLUSTER}-worker2`, mark),
      (e) => isVeilError(e) && e.code === 'ETCD_PERMISSION_DENIED' && e.message.includes(`etcd denied writing Node '${CLUSTER}-worker2' to node user 'veil-node/${CLUSTER}/${CLUSTER}-worker'`));
    assert.deepEqual(await asWorker.get('Node', `${CLUSTER}-worker2`), other, 'worker2 unchanged');
  } finally {
    asWorker.close();
  }

  // NotReady until an agent reports; a ready report, a live liveness lease in the registry and the
  // reporting agent's process running (a sleep stands in for it, recorded as the lab's agent of
  // that node) make it Ready; once that process is gone the node is NotReady, lease or not
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${CLUSTER}-worker\\s+NotReady\\s+<none>\\s+\\d+s\\s+172\\.18\\.0\\.3\\s+10\\.244\\.1\\.0/24$`, 'm'));
  const standIn = spawn('sleep', ['600'], { stdio: 'ignore' });
  const standInPid = standIn.pid!;
  const reg = openRegistry(CLUSTER);
  await reg.mutate('Node', `${CLUSTER}-worker`, (cur) => cur && { ...cur, status: { agent: { ready: true, pid: standInPid } } });
  registerPid(CLUSTER, `agent-${CLUSTER}-worker`, standInPid);
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${CLUSTER}-worker\\s+NotReady\\s`, 'm'), 'no lease: not ready');
  const lease = await reg.holdLease(`${CLUSTER}-worker`, 15, { pid: standInPid });
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${CLUSTER}-worker\\s+Ready\\s`, 'm'));
  const exited = new Promise((r) => standIn.once('exit', r));
  standIn.kill('SIGKILL');
  await exited;
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${CLUSTER}-worker\\s+NotReady\\s`, 'm'), 'the reporting agent is not running: not ready');
  await lease.release();
  reg.close();
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${CLUSTER}-control-plane\\s+NotReady\\s+control-plane\\s`, 'm'));

  ok(veil('lab', 'pod', 'create', 'pod-a', '--node', `${CLUSTER}-worker`));
  ok(veil('lab', 'pod', 'create', 'pod-b', '--node', `${CLUSTER}-worker2`));
  const pods = ok(veil('lab', 'get', 'pods', '-o', 'wide'));
  assert.match(pods, new RegExp(`^pod-a\\s+1/1\\s+Running\\s+\\d+s\\s+10\\.244\\.1\\.2\\s+${CLUSTER}-worker$`, 'm'));
  assert.match(pods, new RegExp(`^pod-b\\s+1/1\\s+Running\\s+\\d+s\\s+10\\.244\\.2\\.2\\s+${CLUSTER}-worker2$`, 'm'));

  // capture on worker's underlay while pinging both ways with a marker payload
  const cap = spawn('ip', ['netns', 'exec', `veil-${CLUSTER}_worker`, 'tcpdump', '-n', '-l', '-X', '-i', 'eth0', '-c', '4', 'icmp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  registerPid(CLUSTER, 'e2e-capture', cap.pid!);
  let capOut = '', capErr = '';
  cap.stdout.on('data', (d) => { capOut += d; });
  const capDone = new Promise<void>((res) => cap.on('close', () => res())); // its output read
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`tcpdump did not start: ${capErr}`)), 10_000);
    cap.stderr.on('data', (d) => { capErr += d; if (capErr.includes('listening on')) { clearTimeout(t); res(); } });
  });
  ok(veil('lab', 'exec', 'pod-a', '--', 'ping', '-c', '1', '-W', '2', '-p', 'feedc0de', '10.244.2.2'));
  ok(veil('lab', 'exec', 'pod-b', '--', 'ping', '-c', '1', '-W', '2', '-p', 'feedc0de', '10.244.1.2'));
  await Promise.race([capDone, new Promise((r) => setTimeout(r, 5000))]);
  assert.match(capOut, /IP 10\.244\.1\.2 > 10\.244\.2\.2: ICMP echo request/);
  assert.match(capOut, /IP 10\.244\.2\.2 > 10\.244\.1\.2: ICMP echo reply/);
  assert.match(capOut, /IP 10\.244\.2\.2 > 10\.244\.1\.2: ICMP echo request/);
  assert.match(capOut, /IP 10\.244\.1\.2 > 10\.244\.2\.2: ICMP echo reply/);
  assert.match(capOut, /feed ?c0de/, 'the payload marker is readable on the underlay: plaintext');

  // exit status comes through; errors say what to do and change nothing
  assert.equal(veil('lab', 'exec', 'pod-a', '--', 'sh', '-c', 'exit 3').status, 3);
  assert.equal(veil('lab', 'node-exec', `${CLUSTER}-worker3`, '--', 'ip', 'addr', 'show', 'eth0').stdout.includes('172.18.0.5/16'), true);
  const unknownNode = veil('lab', 'pod', 'create', 'pod-c', '--node', 'nope');
  assert.equal(unknownNode.status, 1);
  assert.match(unknownNode.stderr, /node 'nope' not found .*veil lab get nodes/);
  const unknownPod = veil('lab', 'exec', 'nope', '--', 'true');
  assert.equal(unknownPod.status, 1);
  assert.match(unknownPod.stderr, /pod 'nope' not found/);
  const inUse = veil('lab', 'up', '--name', CLUSTER);
  assert.equal(inUse.status, 1);
  assert.match(inUse.stderr, /already exists.*veil lab down --name/);
  const overlap = veil('lab', 'up', '--name', OVERLAPPING);
  assert.equal(overlap.status, 1);
  assert.match(overlap.stderr, new RegExp(`overlaps .* of lab cluster '${CLUSTER}'`));
  assert.equal(existsSync(join(home, 'clusters', OVERLAPPING)), false);
  assert.equal(ourNetns().length, 8);

  // pod delete takes its namespace and veth
  ok(veil('lab', 'pod', 'create', 'pod-c', '--node', `${CLUSTER}-worker`));
  const hostLinks = () => spawnSync('ip', ['-n', `veil-${CLUSTER}_worker`, '-o', 'link'], { encoding: 'utf8' }).stdout.match(/veil[0-9a-f]{8}/g) ?? [];
  assert.equal(hostLinks().length, 2);
  ok(veil('lab', 'pod', 'delete', 'pod-c'));
  assert.equal(hostLinks().length, 1);
  assert.equal(ourNetns().includes(`veil-${CLUSTER}_pod_pod-c`), false);

  // processes: one registered (an "agent"), one stray inside a pod (the safety net)
  const agent = spawn('ip', ['netns', 'exec', `veil-${CLUSTER}_worker2`, 'sleep', '1000'], { stdio: 'ignore' });
  const stray = spawn('ip', ['netns', 'exec', `veil-${CLUSTER}_pod_pod-b`, 'sleep', '1001'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  registerPid(CLUSTER, 'agent-worker2', agent.pid!);
  assert.ok(alive(agent.pid!) && alive(stray.pid!));

  const down = veil('lab', 'down', '--name', CLUSTER);
  assert.equal(down.status, 0, down.stderr);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(agent.pid!), false, 'registered process stopped');
  assert.equal(alive(stray.pid!), false, 'process inside a namespace stopped');
  assert.equal(alive(cap.pid!), false);
  assert.deepEqual(ourNetns(), [], 'no namespace left');
  const rootLinks = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
  assert.doesNotMatch(rootLinks, /veil-n\d|veil-e\d|veil-br0|veil[0-9a-f]{8}/, 'no link in the root namespace');
  assert.equal(existsSync(join(home, 'clusters', CLUSTER)), false, 'no cluster files left');
  assert.equal(existsSync(join(home, 'current-cluster')), false);
  assert.equal(spawnSync('pgrep', ['-f', `veil-${CLUSTER}_`]).status, 1, 'no process mentions the cluster');
  assert.equal(spawnSync('pgrep', ['-f', `${home}/clusters/${CLUSTER}`]).status, 1, 'no etcd member left');
  assert.doesNotMatch(readFileSync(join(home, 'config'), 'utf8'), new RegExp(`name: ${CLUSTER}\b`), 'the cluster config forgot the lab');

  const again = veil('lab', 'down', '--name', CLUSTER);
  assert.equal(again.status, 0);
  assert.match(again.stdout, /nothing to remove/);
});

test('e2e lab: down cleans up after a half-finished up', { timeout: 120_000 }, () => {
  // namespaces of a cluster whose state directory never got written (a crash early in up)
  for (const s of ['fabric', 'control-plane']) assert.equal(spawnSync('ip', ['netns', 'add', `veil-${CLUSTER}_${s}`]).status, 0);
  spawnSync('ip', ['-n', `veil-${CLUSTER}_fabric`, 'link', 'add', 'veil-n0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `veil-${CLUSTER}_control-plane`]);
  const inUse = veil('lab', 'up', '--name', CLUSTER);
  assert.equal(inUse.status, 1);
  assert.match(inUse.stderr, /already exists/);
  ok(veil('lab', 'down', '--name', CLUSTER));
  assert.deepEqual(ourNetns(), []);
  // and then up works again
  ok(veil('lab', 'up', '--name', CLUSTER, '--nodes', '2', '--mtu', '1400', '--underlay-subnet', '172.30.5.0/24', '--pod-cidr', '10.77.0.0/16'));
  assert.match(ok(veil('lab', 'node-exec', `${CLUSTER}-worker`, '--', 'ip', 'addr', 'show', 'eth0')), /mtu 1400[\s\S]*172\.30\.5\.3\/24/);
  assert.match(ok(veil('lab', 'node-exec', `${CLUSTER}-worker`, '--', 'ip', 'route')), /10\.77\.0\.0\/24 via 172\.30\.5\.2 dev eth0/);
  ok(veil('lab', 'down'));
  assert.deepEqual(ourNetns(), []);
});

test('e2e lab: an up that fails half-way leaves nothing behind', { timeout: 120_000 }, () => {
  // a directory where worker's boot_id file must go: up fails after several namespaces exist
  mkdirSync(join(home, 'clusters', CLUSTER, 'nodes', `${CLUSTER}-worker`, 'boot_id'), { recursive: true });
  const r = veil('lab', 'up', '--name', CLUSTER, '--nodes', '3');
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  assert.deepEqual(ourNetns(), [], 'rolled back');
  assert.equal(spawnSync('pgrep', ['-f', `${home}/clusters/${CLUSTER}`]).status, 1, 'the etcd it had started is stopped');
  assert.equal(existsSync(join(home, 'clusters', CLUSTER)), false);
  assert.equal(existsSync(join(home, 'current-cluster')), false);
});
