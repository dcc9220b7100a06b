// Faults an operator meets, on one 3-node IPsec lab (issue #14): an install that fails on one node
// is undone everywhere (no half-installed cluster); a killed agent is restarted by its supervisor
// and counts as not ready while it is dead; a hostile node object never gets a route over the
// underlay, and uninstall removes everything veil installed; garbage and oversized registry
// objects are named, never fatal; on hosts (the install made through etcd while the agents run under
// their supervisors), a failed install is rolled back by the agents themselves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { agentApi, clusterStatusReport, ok, veilCli } from './cli.js';
import { startAgent, stopAgent } from '../../src/lab/agents.js';
import { TestLab, pingCount } from './lab-harness.js';
import { waitFor } from '../wait-for.js';
import type { StatusReport } from '../../src/operator/cluster-status.js';
import type { Healthz } from '../../src/agent/api.js';
import { agentStatusOf } from '../../src/agent/registry-node-source.js';
import { clusterEtcdOptions, openRegistry } from '../../src/control/cluster.js';
import { connectEtcd } from '../../src/control/etcd/etcd-connection.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const lab = new TestLab('tresil', 3);
const { veil } = lab;
const [, WORKER, WORKER2] = lab.nodes as [string, string, string];
const POD_B = '10.244.2.2'; // pb on worker2
const status = (): StatusReport => JSON.parse(lab.veil('status', '-o', 'json').stdout) as StatusReport;
/** The same, and a node agent's health, asked from this process: for polls, which then start no CLI. */
const askStatus = (): Promise<StatusReport> => clusterStatusReport(lab.cluster);
const askHealth = async (node: string): Promise<Partial<Healthz>> => (await agentApi(lab.cluster, node)).healthz().catch(() => ({})); // as the CLI's '{}' when it fails
const nodeStatus = (r: StatusReport, node: string) => r.nodes.find((n) => n.name === node)!;

before(() => {
  lab.start();
  ok(veil('lab', 'pod', 'create', 'pa', '--node', WORKER));
  ok(veil('lab', 'pod', 'create', 'pb', '--node', WORKER2));
  ok(veil('secret', 'create', 'ipsec-keys', `--from-literal=keys=3+ rfc4106(gcm(aes)) ${randomBytes(20).toString('hex')} 128`));
});

after(() => lab.stop());

let plainRoutes: Record<string, string[]> = {}; // every node's routes before veil was installed

test('e2e resilience: an install that fails on one node (UDP 4500 taken) is rolled back on every node: no agent, device, route or setting is left', { timeout: 120_000 }, async () => {
  plainRoutes = lab.routes();
  // something else holds the ESP-in-UDP port on worker2
  const blocker = lab.spawn(['ip', 'netns', 'exec', lab.netns(WORKER2), 'python3', '-c',
    "import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',4500)); print('bound',flush=True); time.sleep(600)"]);
  await new Promise<void>((res) => blocker.stdout!.once('data', () => res()));

  const r = veil('install', '--encryption', 'ipsec', '--wait-timeout', '60s');
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`the agent on ${WORKER2} exited: .*UDP port 4500 is not free`), r.stderr);
  assert.match(r.stderr, /the install was rolled back/);

  for (const n of lab.nodes) {
    assert.equal(veil('agent', 'pid', n).status, 1, `no agent runs on ${n}`);
    assert.equal(lab.recordedPid(`supervisor-${n.slice(0)}`), undefined, `no supervisor is recorded on ${n}`);
    assert.notEqual(lab.onNode(n, 'ip', 'link', 'show', 'veil_ipsec0').status, 0, `no tunnel device on ${n}`);
  }
  assert.deepEqual(lab.routes(), plainRoutes, 'every node routes exactly as before the install');
  const st = status();
  assert.equal(st.installed, false, 'no settings are left');
  assert.equal(veil('secret', 'get', 'veil-agent-api-token').status, 1, 'the API token this install made is gone');
  ok(veil('secret', 'get', 'ipsec-keys')); // the operator's own secret stays
  assert.equal(pingCount(lab, 'pa', POD_B), 3, 'the pods reach each other as before');

  blocker.kill('SIGKILL');
  await waitFor('the port to be free', () => !lab.onNode(WORKER2, 'ss', '-Hulpn', 'sport = :4500').stdout.trim(), 10_000);
  assert.match(ok(veil('install', '--encryption', 'ipsec')), /successfully installed/);
  assert.equal(pingCount(lab, 'pa', POD_B), 3);
});

/** What the worker's agent publishes of its own supervision (restarts it counted, how its run before ended). */
async function ownSupervision() {
  const reg = openRegistry(lab.cluster);
  try {
    return agentStatusOf((await reg.get('Node', WORKER))!)?.supervision;
  } finally {
    reg.close();
  }
}

test('e2e resilience: a kill -9ed agent counts as not ready while dead (its lease still lives), and its supervisor restarts it; status shows the restart', { timeout: 120_000 }, async () => {
  const supervisor = lab.recordedPid(`supervisor-${WORKER}`);
  assert.ok(supervisor, 'the lab supervises the agent');
  const dead = Number(ok(veil('agent', 'pid', WORKER)).trim());
  // the agent's own count of restarts lives in its state dir and outlives an install: the tests before
  // (an install rolled back, which its agents leave with exit 1) may have added to it
  const ownBefore = await ownSupervision();
  process.kill(supervisor, 'SIGSTOP'); // hold the restart so the dead agent can be observed
  try {
    process.kill(dead, 'SIGKILL');
    const during = await waitFor('status to see the dead agent', async () => {
      const s = await askStatus();
      return !nodeStatus(s, WORKER).running && s;
    }, 20_000);
    const w = nodeStatus(during, WORKER);
    assert.notEqual(w.leaseAgeSeconds, undefined, 'its liveness lease still lives');
    assert.equal(w.ready, false, 'a dead agent is not ready');
    assert.equal(during.agents.ready, 2);
    assert.ok(during.errors.some((e) => e.node === WORKER && e.reason.startsWith(`agent not running (pid ${dead} is gone)`)), JSON.stringify(during.errors));
    assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${WORKER}\\s+NotReady`, 'm'));
  } finally {
    process.kill(supervisor, 'SIGCONT');
  }
  const after = await waitFor('the agent restarted and ready', async () => {
    const s = await askStatus();
    return s.agents.ready === 3 && s.agents.available === 3 && s;
  }, 60_000);
  const w = nodeStatus(after, WORKER);
  assert.equal(w.restarts, 1);
  assert.notEqual(w.pid, dead);
  // what a host's agent publishes of itself: the unit's ExecStopPost (`veil agent stopped`, which
  // the lab's supervisor runs with systemd's environment) recorded the SIGKILL, and the restarted
  // agent counted the restart from that record
  const own = await ownSupervision();
  const restartsBefore = ownBefore?.restarts ?? 0;
  assert.deepEqual([own?.restarts, own?.state, own?.lastExit?.signal, own?.lastExit?.result], [restartsBefore + 1, 'running', 'SIGKILL', 'signal'], `before the kill ${JSON.stringify(ownBefore)}, after ${JSON.stringify(own)}`);
  // The other nodes' probes went unanswered while the agent was dead: their node-connectivity is
  // Degraded until an ack comes back through the restarted agent (its replay mark refuses the first
  // fresh ESP numbers for a moment), and `veil status` exits 1 until then.
  await waitFor('every node\'s probes answered again', async () => (await askStatus()).errors.length === 0, 60_000);
  assert.match(ok(veil('status')), new RegExp(`^${WORKER}\\s+Available\\s+1\\s`, 'm'));
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${WORKER}\\s+Ready`, 'm'));
  // a restarted receiver refuses fresh ESP numbers under its persisted replay mark for a moment
  await waitFor('traffic to flow again after the restart', () => pingCount(lab, 'pa', POD_B) === 3, 30_000);
});

/**
 * Waits until pa reaches pb (a restarted receiver refuses fresh ESP numbers under its persisted
 * replay mark for a moment); on a timeout the failure carries both agents' drops and last log lines.
 */
async function podsTalk(when: string): Promise<void> {
  try {
    await waitFor(`pa to reach pb ${when}`, () => pingCount(lab, 'pa', POD_B) === 3, 30_000);
  } catch (e) {
    const diag = [WORKER, WORKER2].map((n) => {
      const enc = veil('agent', 'encrypt', 'status', n, '-o', 'json');
      const drops = enc.status === 0 ? JSON.stringify((JSON.parse(enc.stdout) as { drops?: unknown }).drops) : enc.stderr;
      const log = readFileSync(join(lab.home, 'clusters', lab.cluster, 'nodes', n, 'agent.log'), 'utf8').trim().split('\n').slice(-6).join('\n');
      return `${n}: drops ${drops}\nroutes: ${lab.onNode(n, 'ip', 'route').stdout}\n${log}`;
    }).join('\n');
    throw new Error(`${(e as Error).message}\n${diag}`);
  }
}

/** The agent's resident memory in MB. */
function agentRssMb(node: string): number {
  const pid = Number(ok(veil('agent', 'pid', node)).trim());
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

test('e2e resilience: garbage and oversized node objects in etcd are named by status and lab get nodes, refused by size unread, and no agent stops reconciling', { timeout: 120_000 }, async () => {
  const raw = connectEtcd(clusterEtcdOptions(lab.cluster)); // as the lab's admin: its etcd runs with auth
  const key = (name: string) => `veil/${lab.cluster}/nodes/${name}`;
  const rssBefore = lab.nodes.map(agentRssMb);
  try {
    await raw.put(key('garbage')).value('{"kind":"Node","metadata":{"name":"garb');
    // each under etcd's 1.5 MiB request limit; together more than one gRPC answer used to carry
    for (let i = 0; i < 4; i++) await raw.put(key(`huge${i}`)).value(JSON.stringify({ kind: 'Node', metadata: { name: `huge${i}` }, spec: { internalIP: `172.18.1.${i}`, podCIDR: `10.250.${i}.0/24`, pad: 'x'.repeat(1_400_000) } }));
    const st = lab.veil('status', '-o', 'json');
    const report = JSON.parse(st.stdout) as StatusReport;
    assert.equal(report.agents.ready, 3, 'every agent still ready');
    const reasons = report.errors.filter((e) => e.node === 'registry').map((e) => e.reason);
    assert.ok(reasons.some((r) => r.startsWith(`${key('garbage')} is not a valid object, skipped: not JSON`)), reasons.join('\n'));
    assert.ok(reasons.some((r) => new RegExp(`^${key('huge0')} is not a valid object, skipped: \\d+ bytes, more than the 524288`).test(r)), reasons.join('\n'));
    const nodes = lab.veil('lab', 'get', 'nodes');
    assert.equal(nodes.status, 0, nodes.stderr);
    assert.match(nodes.stdout, new RegExp(`^${WORKER}\\s+Ready`, 'm'));
    assert.match(nodes.stderr, new RegExp(`warning: ${key('garbage')} is not a valid object, skipped: not JSON`));
    // every agent names them (read from its registry every 2 s), and goes on reconciling: a restart reads the list
    await waitFor('every agent to name the oversized object', async () => (await Promise.all(lab.nodes.map(askHealth))).every((h) =>
      h.health?.checks.some((c) => c.name === 'peer huge3' && /bytes, more than/.test(c.message))), 30_000);
    // a crash: the supervisor starts the agent again, which reads the list with the bad objects in it
    const crashed = Number(ok(veil('agent', 'pid', WORKER2)).trim());
    process.kill(crashed, 'SIGKILL');
    await waitFor('the restarted agent ready', async () => { const s = await askStatus(); return s.agents.ready === 3 && nodeStatus(s, WORKER2).pid !== crashed; }, 60_000);
    await podsTalk('after the restart of worker2');
    const rssAfter = lab.nodes.map(agentRssMb);
    console.log(`# agent RSS MB before ${rssBefore.map((x) => x.toFixed(0)).join('/')}, after 4 x 1.4 MB objects ${rssAfter.map((x) => x.toFixed(0)).join('/')}`);
    for (const [i, mb] of rssAfter.entries()) assert.ok(mb < rssBefore[i]! + 150, `agent RSS ${mb.toFixed(0)} MB (was ${rssBefore[i]!.toFixed(0)}): flat, not 400 MB`);
  } finally {
    for (const n of ['garbage', 'huge0', 'huge1', 'huge2', 'huge3']) await raw.delete().key(key(n)).exec();
    raw.close();
  }
  await waitFor('status to be clean again', async () => { const s = await askStatus(); return s.installed && s.ok; }, 30_000);
  assert.equal(lab.veil('status').status, 0, 'veil status exits 0 again');
});

test('e2e resilience: a node object whose pod CIDR covers the etcd member subnet gets no route on any node, the cluster keeps working, and uninstall restores every route', { timeout: 120_000 }, async () => {
  const hostile = `${lab.cluster}-hostile`;
  const reg = openRegistry(lab.cluster);
  const lease = await reg.holdLease(hostile, 15, { pid: process.pid }); // a peer only while "its agent" lives
  try {
    // no node address in it (peer admission alone lets it through), but the lab's etcd at 172.18.255.254
    await reg.create({ kind: 'Node', metadata: { name: hostile }, spec: { internalIP: '172.18.0.250', podCIDR: '172.18.255.0/24' } });
    await waitFor('every agent to refuse the hostile object', async () => (await Promise.all(lab.nodes.map(askHealth))).every((h) => {
      const c = h.health?.checks.find((x) => x.name === `peer ${hostile}`);
      return c && /its pod CIDR 172\.18\.255\.0\/24 overlaps the connected route 172\.18\.0\.0\/16 dev eth0 of this node/.test(c.message);
    }), 30_000);
    for (const n of lab.nodes) assert.equal(lab.onNode(n, 'ip', 'route', 'show', '172.18.255.0/24').stdout.trim(), '', `no route over the underlay on ${n}`);
    await waitFor('a pass of every agent after the refusal (leases renewed through etcd)', async () => (await askStatus()).agents.ready === 3, 30_000);
    // a restarted receiver refuses fresh ESP numbers under its persisted replay mark for a moment
    await podsTalk('with the forged object refused');
  } finally {
    await reg.delete('Node', hostile);
    await lease.release();
    reg.close();
  }
  // a fail-closed route veil installed for an object that is gone since: uninstall removes it too
  ok(lab.onNode(WORKER, 'ip', 'route', 'add', 'blackhole', '10.244.99.0/24', 'metric', '4242'));
  ok(veil('uninstall'));
  assert.deepEqual(lab.routes(), plainRoutes, 'every node routes exactly as before veil was installed');
  assert.equal(pingCount(lab, 'pa', POD_B), 3);
});

test('e2e resilience: on hosts (agents running under their supervisors before the install, the install made from an operator\'s machine through etcd), an install that fails on one node is rolled back: every agent removes its tunnel and puts back the routes it replaced', { timeout: 150_000 }, async () => {
  assert.deepEqual(lab.routes(), plainRoutes, 'plaintext before');
  // an operator's machine: the cluster config names the lab's etcd, and this CLI runs no lab
  const operatorHome = mkdtempSync(join(tmpdir(), 'veil-t-operator-'));
  const operator = veilCli({ ...lab.env, VEIL_HOME: operatorHome, VEIL_CONFIG: join(lab.home, 'config'), VEIL_CLUSTER: lab.cluster }, 120_000);
  const blocker = lab.spawn(['ip', 'netns', 'exec', lab.netns(WORKER2), 'python3', '-c',
    "import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',4500)); print('bound',flush=True); time.sleep(600)"]);
  await new Promise<void>((res) => blocker.stdout!.once('data', () => res()));
  const reg = openRegistry(lab.cluster);
  try {
    await reg.delete('Secret', 'veil-agent-api-token'); // left by the installs before: this one makes it
    // as systemd runs them on hosts before 'veil install': they exit NOT_INSTALLED and are started again
    for (const n of await reg.list('Node')) startAgent(lab.cluster, n);
    const r = operator('install', '--encryption', 'ipsec', '--wait-timeout', '25s');
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`agents not ready after 25s on: ${WORKER2}`), r.stderr);
    assert.match(r.stderr, /the install was rolled back: its settings are removed, and every agent removed its tunnel/, r.stderr);
    assert.match(r.stdout, /Waiting for agents: 2\/3 ready/, 'the other agents had their tunnels up');
    assert.match(r.stdout, /Generated the agent API token/);

    // the agents did it themselves (nothing of the lab's): no device, no blackhole, the plaintext routes back
    for (const n of lab.nodes) assert.notEqual(lab.onNode(n, 'ip', 'link', 'show', 'veil_ipsec0').status, 0, `no tunnel device on ${n}`);
    assert.deepEqual(lab.routes(), plainRoutes, 'every node routes exactly as before the install');
    assert.equal(pingCount(lab, 'pa', POD_B), 3, 'the pods reach each other in plaintext, as before');
    assert.equal(status().installed, false, 'no settings are left');
    assert.deepEqual((await reg.list('Lease')).map((l) => l.metadata.name), [], 'no agent holds a lease');
    assert.equal(veil('secret', 'get', 'veil-agent-api-token').status, 1, 'the API token this install made is gone');
    ok(veil('secret', 'get', 'ipsec-keys')); // the operator's own secret stays
    assert.ok(lab.nodes.every((n) => lab.recordedPid(`supervisor-${n}`)), 'the agents stay supervised, waiting for the next install');
  } finally {
    blocker.kill('SIGKILL');
    for (const n of lab.nodes) await stopAgent(lab.cluster, n);
    reg.close();
    rmSync(operatorHome, { recursive: true, force: true });
  }
});
