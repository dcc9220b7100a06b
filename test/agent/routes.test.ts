// Steering routes in one `ip -batch` process, on a real routing table (a throwaway namespace): every
// prefix of both families gets the tunnel route over its fail-closed blackhole, a line ip refuses
// is reported without leaving the prefixes after it unrouted, and a release removes both routes; a
// whole pass's reading of the table finds exactly the routes to mend.
// The tunnel's underlay bypass rule is set up again at every agent start without a moment missing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mustRun, run } from '../../src/util/exec.js';
import { FAIL_CLOSED_METRIC, keepTunnelTrafficOnUnderlay, listTunnelRoutes, prefixesOnDevice, readTunnelRoutes, releasePrefixes, releaseTunnelBypass, routesToMend, steerIntoTunnel, tunnelRoutesNow, TUNNEL_BYPASS_TABLE, type TunnelRoutesNow } from '../../src/agent/routes.js';

const ns = `veil-trt-${process.pid}`;
const bypassNs = `veil-tbp-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); run(['ip', 'netns', 'del', bypassNs]); });

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

  // A whole pass mends only what differs from the table: nothing here, then a blackhole gone, a source changed, a route gone.
  const want = [{ prefix: '10.1.0.0/24' }, { prefix: '10.2.0.0/24', src: '10.77.0.1' }, { prefix: 'fd00:1::/64' }];
  assert.deepEqual(routesToMend(want, tunnelRoutesNow(device, ns)), [], 'all in place: nothing to steer');
  // The listing's fingerprint: the same while nothing changes, another after each change (a periodic pass skips reading a listing found in place before).
  const inPlace = listTunnelRoutes(device, ns).fingerprint;
  assert.equal(listTunnelRoutes(device, ns).fingerprint, inPlace);
  const tmp = process.env.TMPDIR;
  process.env.TMPDIR = '/nonexistent-veil-tmp'; // no temporary file: the listing comes through a pipe, the same
  try { assert.equal(listTunnelRoutes(device, ns).fingerprint, inPlace); } finally { if (tmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = tmp; }
  const seen = new Set([inPlace]);
  const changes: string[][] = [
    ['route', 'del', 'blackhole', '10.1.0.0/24', 'metric', String(FAIL_CLOSED_METRIC)],
    ['route', 'replace', '10.2.0.0/24', 'dev', device],
    ['-6', 'route', 'del', 'fd00:1::/64', 'dev', device],
  ];
  for (const c of changes) {
    mustRun(['ip', '-n', ns, ...c]);
    const f = listTunnelRoutes(device, ns).fingerprint;
    assert.ok(!seen.has(f), `the fingerprint moves with: ip ${c.join(' ')}`);
    seen.add(f);
  }
  assert.deepEqual(routesToMend(want, tunnelRoutesNow(device, ns)), want, 'each one mended');
  steerIntoTunnel(want.map((r) => ({ ...r, device })), ns);
  assert.deepEqual(routesToMend(want, tunnelRoutesNow(device, ns)), []);
  assert.equal(listTunnelRoutes(device, ns).fingerprint, inPlace, 'mended: the listing is the one in place before');

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

test("a whole pass reads ip's text: the device's routes with their source, the fail-closed blackholes, nothing else", () => {
  // As iproute2 6.1 prints `route show table main dev D` and then `route show table main type blackhole`.
  const v4 = [
    '10.100.0.0/24 scope link linkdown ',
    '10.100.1.0/24 scope link src 10.244.1.1 linkdown ',
    '10.100.2.5 scope link linkdown mtu 1400 ',
    '10.100.3.0/24 scope link metric 7 linkdown ',
    'default scope link ',
    'unreachable 10.100.8.0/24 ',
    '10.100.9.0/24 proto static metric 5 ',
    '\tnexthop via 172.18.0.9 weight 1 ',
    'blackhole 10.9.0.0/16 ',
    'blackhole 10.100.0.0/24 metric 4242 ',
    'blackhole 10.100.1.0/24 proto static metric 4242 ',
    'blackhole 10.100.4.0/24 metric 42420 ',
    'blackhole 10.100.5.7 metric 4242 ',
  ].join('\n') + '\n';
  const v6 = 'fd00:1::/64 metric 1024 pref medium\nfd00:2::5 src fd00::1 metric 1024 pref medium\nblackhole fd00:1::/64 dev lo metric 4242 pref medium\n';
  const now: TunnelRoutesNow = { routed: new Map(), failClosed: new Set() };
  readTunnelRoutes(v4, '/32', now);
  readTunnelRoutes(v6, '/128', now);
  readTunnelRoutes('', '/32', now);
  assert.deepEqual([...now.routed], [
    ['10.100.0.0/24', undefined], ['10.100.1.0/24', '10.244.1.1'], ['10.100.2.5/32', undefined], ['10.100.3.0/24', undefined], ['10.100.9.0/24', undefined],
    ['fd00:1::/64', undefined], ['fd00:2::5/128', 'fd00::1'],
  ]);
  assert.deepEqual([...now.failClosed], ['10.100.0.0/24', '10.100.1.0/24', '10.100.5.7/32', 'fd00:1::/64'], 'only the blackholes of FAIL_CLOSED_METRIC');
});

test('the underlay bypass rule (both families) is kept in place, never deleted and re-added, when the agent starts again', { timeout: 60_000 }, async () => {
  const port = 51871, ipn = ['ip', '-n', bypassNs, '-4'];
  mustRun(['ip', 'netns', 'add', bypassNs]);
  mustRun([...ipn, 'link', 'add', 'veil-bp0', 'type', 'veth', 'peer', 'name', 'veil-bp1']);
  mustRun([...ipn, 'link', 'add', 'veil-bptun', 'type', 'veth', 'peer', 'name', 'veil-bptun1']); // stands for the tunnel device
  for (const l of ['veil-bp0', 'veil-bp1', 'veil-bptun', 'veil-bptun1']) mustRun([...ipn, 'link', 'set', l, 'up']);
  mustRun([...ipn, 'addr', 'add', '10.78.0.1/24', 'dev', 'veil-bp0']);
  mustRun([...ipn, 'route', 'add', '10.78.0.2/32', 'dev', 'veil-bptun']); // node encryption: the peer's node IP into the tunnel
  // The same over IPv6 (a tunnel between IPv6 node addresses): the connected route is the kernel's, without a link scope.
  mustRun(['ip', '-n', bypassNs, '-6', 'addr', 'add', 'fd78::1/64', 'dev', 'veil-bp0', 'nodad']);
  mustRun(['ip', '-n', bypassNs, '-6', 'route', 'add', 'fd78::2/128', 'dev', 'veil-bptun']);
  const rules = (fam = '-4') => JSON.parse(mustRun(['ip', '-n', bypassNs, fam, '-j', 'rule', 'show', 'priority', '100'])) as { sport?: number; table?: string }[];
  const deviceFor = (extra: string[], dst = '10.78.0.2') => /dev (\S+)/.exec(mustRun(['ip', '-n', bypassNs, 'route', 'get', dst, ...extra]))?.[1];

  keepTunnelTrafficOnUnderlay(port, 'veil-bp0', bypassNs);
  for (const fam of ['-4', '-6']) assert.deepEqual(rules(fam).map((r) => [r.sport, r.table]), [[port, String(TUNNEL_BYPASS_TABLE)]], fam);
  assert.equal(deviceFor(['ipproto', 'udp', 'sport', String(port)]), 'veil-bp0', "the tunnel's own datagrams stay on the underlay");
  assert.equal(deviceFor([]), 'veil-bptun', 'other traffic to the node IP goes into the tunnel');
  assert.equal(deviceFor(['ipproto', 'udp', 'sport', String(port)], 'fd78::2'), 'veil-bp0', "IPv6: the tunnel's own datagrams stay on the underlay");
  assert.equal(deviceFor([], 'fd78::2'), 'veil-bptun', 'IPv6: other traffic to the node IP goes into the tunnel');

  // Every rule change the kernel announces while the agent starts twice more, between two marker rules.
  const monitor = spawn('ip', ['-n', bypassNs, 'monitor', 'rule'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let seen = '';
  monitor.stdout.on('data', (d: Buffer) => { seen += d.toString(); });
  const marker = async (prio: number): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!seen.includes(`${prio}:`)) { // the monitor subscribes after it starts: add the marker until it is seen
      assert.ok(Date.now() < deadline, `ip monitor never showed marker rule ${prio}: ${seen}`);
      run([...ipn, 'rule', 'del', 'priority', String(prio)]);
      mustRun([...ipn, 'rule', 'add', 'priority', String(prio), 'lookup', String(prio)]);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await marker(7001);
    const start = seen.length;
    keepTunnelTrafficOnUnderlay(port, 'veil-bp0', bypassNs);
    keepTunnelTrafficOnUnderlay(port, 'veil-bp0', bypassNs);
    await marker(7002);
    const during = seen.slice(start, seen.indexOf('7002:', start));
    assert.ok(!during.includes(`lookup ${TUNNEL_BYPASS_TABLE}`), `the bypass rule was touched while in force: ${during}`);
  } finally {
    monitor.kill();
  }
  assert.deepEqual(rules().map((r) => [r.sport, r.table]), [[port, String(TUNNEL_BYPASS_TABLE)]], 'still exactly one rule');
  assert.equal(deviceFor(['ipproto', 'udp', 'sport', String(port)]), 'veil-bp0');

  releaseTunnelBypass(port, bypassNs);
  assert.deepEqual(rules(), []);
  assert.deepEqual(rules('-6'), []);
});
