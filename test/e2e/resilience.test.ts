// Faults an operator meets, on one 3-node IPsec lab (issue #14): an install that fails on one node
// is undone everywhere (no half-installed cluster); a killed agent is restarted by its supervisor
// and counts as not ready while it is dead; a hostile node object never gets a route over the
// underlay, and uninstall removes everything veil installed; garbage and oversized registry
// objects are named, never fatal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ok } from './cli.js';
import { TestLab, pingCount, until } from './lab-harness.js';
import type { StatusReport } from '../../src/operator/cluster-status.js';

const lab = new TestLab('tresil', 3);
const { veil } = lab;
const [, WORKER, WORKER2] = lab.nodes as [string, string, string];
const POD_B = '10.244.2.2'; // pb on worker2
const status = (): StatusReport => JSON.parse(lab.veil('status', '-o', 'json').stdout) as StatusReport;
const nodeStatus = (r: StatusReport, node: string) => r.nodes.find((n) => n.name === node)!;

before(() => {
  lab.start();
  ok(veil('lab', 'pod', 'create', 'pa', '--node', WORKER));
  ok(veil('lab', 'pod', 'create', 'pb', '--node', WORKER2));
  ok(veil('secret', 'create', 'ipsec-keys', `--from-literal=keys=3+ rfc4106(gcm(aes)) ${randomBytes(20).toString('hex')} 128`));
});

after(() => lab.stop());

test('e2e resilience: an install that fails on one node (UDP 4500 taken) is rolled back on every node: no agent, device, route or setting is left', { timeout: 120_000 }, async () => {
  const plainRoutes = lab.routes();
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
  await until('the port to be free', () => !lab.onNode(WORKER2, 'ss', '-Hulpn', 'sport = :4500').stdout.trim(), 10_000);
  assert.match(ok(veil('install', '--encryption', 'ipsec')), /successfully installed/);
  assert.equal(pingCount(lab, 'pa', POD_B), 3);
});

test('e2e resilience: a kill -9ed agent counts as not ready while dead (its lease still lives), and its supervisor restarts it; status shows the restart', { timeout: 120_000 }, async () => {
  const supervisor = lab.recordedPid(`supervisor-${WORKER}`);
  assert.ok(supervisor, 'the lab supervises the agent');
  const dead = Number(ok(veil('agent', 'pid', WORKER)).trim());
  process.kill(supervisor, 'SIGSTOP'); // hold the restart so the dead agent can be observed
  try {
    process.kill(dead, 'SIGKILL');
    const during = await until('status to see the dead agent', () => {
      const s = status();
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
  const after = await until('the agent restarted and ready', () => {
    const s = status();
    return s.agents.ready === 3 && s.agents.available === 3 && s;
  }, 60_000);
  const w = nodeStatus(after, WORKER);
  assert.equal(w.restarts, 1);
  assert.notEqual(w.pid, dead);
  assert.match(ok(veil('status')), new RegExp(`^${WORKER}\\s+Available\\s+1\\s`, 'm'));
  assert.match(ok(veil('lab', 'get', 'nodes')), new RegExp(`^${WORKER}\\s+Ready`, 'm'));
  assert.equal(pingCount(lab, 'pa', POD_B), 3, 'traffic flows again');
});
