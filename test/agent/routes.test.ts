// Steering routes in one `ip -batch` process, on a real routing table (a throwaway namespace): every
// prefix of both families gets the tunnel route over its fail-closed blackhole, a line ip refuses
// is reported without leaving the prefixes after it unrouted, and a release removes both routes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mustRun, run } from '../../src/util/exec.js';
import { FAIL_CLOSED_METRIC, prefixesOnDevice, releasePrefixes, steerIntoTunnel } from '../../src/agent/routes.js';

const ns = `veil-trt-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

function routes(fam: '-4' | '-6'): string[] {
  return mustRun(['ip', '-n', ns, fam, 'route', 'show']).trim().split('\n').filter(Boolean);
}

test('steer and release in one ip -batch: both families, fail-closed, a bad line reported', { timeout: 60_000 }, () => {
  mustRun(['ip', 'netns', 'add', ns]);
  mustRun(['ip', '-n', ns, 'link', 'add', 'veil-rt0', 'type', 'veth', 'peer', 'name', 'veil-rt1']);
  for (const l of ['veil-rt0', 'veil-rt1']) mustRun(['ip', '-n', ns, 'link', 'set', l, 'addrgenmode', 'none', 'up']); // no link-local route
  mustRun(['ip', '-n', ns, 'addr', 'add', '10.77.0.1/32', 'dev', 'veil-rt0']);
  const device = 'veil-rt0';
  steerIntoTunnel([{ prefix: '10.1.0.0/24', device }, { prefix: '10.2.0.0/24', device, src: '10.77.0.1' }, { prefix: 'fd00:1::/64', device }], ns);
  assert.deepEqual(prefixesOnDevice(device, ns).sort(), ['10.1.0.0/24', '10.2.0.0/24', 'fd00:1::/64']);
  const v4 = routes('-4'), v6 = routes('-6');
  for (const p of ['10.1.0.0/24', '10.2.0.0/24']) assert.ok(v4.some((l) => l.startsWith(`blackhole ${p}`) && l.includes(`metric ${FAIL_CLOSED_METRIC}`)), `blackhole under ${p}: ${v4.join(' | ')}`);
  assert.ok(v4.some((l) => l.startsWith('10.2.0.0/24 dev veil-rt0') && l.includes('src 10.77.0.1')), v4.join(' | '));
  assert.ok(v6.some((l) => l.startsWith('blackhole fd00:1::/64') && l.includes(`metric ${FAIL_CLOSED_METRIC}`)), v6.join(' | '));

  // A source address the node does not have: ip refuses that line; the prefixes after it are still routed.
  assert.throws(() => steerIntoTunnel([{ prefix: '10.3.0.0/24', device, src: '192.0.2.99' }, { prefix: '10.4.0.0/24', device }], ns),
    (e: Error) => /routing 2 prefix\(es\) into the tunnel failed/.test(e.message));
  assert.ok(prefixesOnDevice(device, ns).includes('10.4.0.0/24'), 'the line after the refused one ran');
  assert.ok(routes('-4').some((l) => l.startsWith('blackhole 10.3.0.0/24')), 'the refused prefix keeps its blackhole: fail-closed');

  releasePrefixes(['10.1.0.0/24', 'fd00:1::/64', '10.9.0.0/24'], device, ns); // 10.9: not routed, fine
  assert.deepEqual(prefixesOnDevice(device, ns).sort(), ['10.2.0.0/24', '10.4.0.0/24']);
  assert.ok(!routes('-4').some((l) => l.includes('10.1.0.0/24')), 'the blackhole went too');
  assert.ok(!routes('-6').some((l) => l.includes('fd00:1::/64')));
});
