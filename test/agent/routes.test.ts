// Steering routes through netlink from the addon, on a real routing table (a throwaway namespace):
// every prefix of both families gets the tunnel route over its fail-closed blackhole, a route the
// kernel refuses is reported without leaving the prefixes after it unrouted, and a release removes
// both routes; the table written is exactly the one `ip -batch` wrote (a twin namespace); a whole
// pass's reading of the table finds exactly the routes to mend.
// The tunnel's underlay bypass rule is set up again at every agent start without a moment missing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mustRun, run } from '../../src/util/exec.js';
import { FAIL_CLOSED_METRIC, keepTunnelTrafficOnUnderlay, listTunnelRoutes, prefixesOnDevice, readTunnelRoutes, releasePrefixes, releaseTunnelBypass, routesToMend, steerIntoTunnel, tunnelRoutesNow, TUNNEL_BYPASS_TABLE, type TunnelRoutesNow } from '../../src/agent/routes.js';

const ns = `veil-trt-${process.pid}`;
const bypassNs = `veil-tbp-${process.pid}`;
const twins = [`veil-tnl-${process.pid}`, `veil-tip-${process.pid}`]; // netlink from the addon, ip
after(() => { for (const n of [ns, bypassNs, ...twins]) run(['ip', 'netns', 'del', n]); });

function routes(fam: '-4' | '-6'): string[] {
  return mustRun(['ip', '-n', ns, fam, 'route', 'show']).trim().split('\n').filter(Boolean);
}

test('steer and release: both families, fail-closed, a refused route reported', { timeout: 60_000 }, () => {
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
    (e: Error) => /routing 2 prefix\(es\) into the tunnel failed for 1: 10\.3\.0\.0\/24 \(dev veil-rt0 src 192\.0\.2\.99\): .*\(EINVAL\)$/.test(e.message));
  assert.ok(prefixesOnDevice(device, ns).includes('10.4.0.0/24'), 'the line after the refused one ran');
  assert.ok(routes('-4').some((l) => l.startsWith('blackhole 10.3.0.0/24')), 'the refused prefix keeps its blackhole: fail-closed');

  releasePrefixes(['10.1.0.0/24', 'fd00:1::/64', '10.9.0.0/24'], device, ns); // 10.9: not routed, fine
  assert.deepEqual(prefixesOnDevice(device, ns).sort(), ['10.2.0.0/24', '10.4.0.0/24']);
  assert.ok(!routes('-4').some((l) => l.includes('10.1.0.0/24')), 'the blackhole went too');
  assert.ok(!routes('-6').some((l) => l.includes('fd00:1::/64')));
});

/** A namespace with the device veil-st0 (10.77.0.1, fd77::1) and veil-st2, no IPv6 link-local routes. */
function steerNs(name: string): void {
  mustRun(['ip', 'netns', 'add', name]);
  mustRun(['ip', '-n', name, 'link', 'add', 'veil-st0', 'type', 'veth', 'peer', 'name', 'veil-st1']);
  mustRun(['ip', '-n', name, 'link', 'add', 'veil-st2', 'type', 'veth', 'peer', 'name', 'veil-st3']);
  for (const l of ['veil-st0', 'veil-st1', 'veil-st2', 'veil-st3']) mustRun(['ip', '-n', name, 'link', 'set', l, 'addrgenmode', 'none', 'up']);
  mustRun(['ip', '-n', name, 'addr', 'add', '10.77.0.1/32', 'dev', 'veil-st0']);
  mustRun(['ip', '-n', name, '-6', 'addr', 'add', 'fd77::1/128', 'dev', 'veil-st0', 'nodad']);
}

/** Every route of both families in every table, with protocol, scope, metric and metrics (ip -d). */
const wholeTable = (name: string): string[] => ['-4', '-6'].flatMap((fam) => mustRun(['ip', '-n', name, '-d', fam, 'route', 'show', 'table', 'all']).trim().split('\n')).sort();

test('the table written through netlink is exactly what ip wrote: steer, replace (source, mtu), release, both families, a refused route', { timeout: 60_000 }, () => {
  const [nl, ip] = twins as [string, string];
  for (const n of twins) steerNs(n);
  const ipBatch = (lines: string[]) => run(['ip', '-n', ip, '-force', '-batch', '-'], { input: lines.join('\n') + '\n' });
  const steerLines = (rs: { prefix: string; device: string; mtu?: number; src?: string }[]) => rs.flatMap((r) => [
    `route replace blackhole ${r.prefix} metric ${FAIL_CLOSED_METRIC}`,
    `route replace ${r.prefix} dev ${r.device}${r.mtu ? ` mtu ${r.mtu}` : ''}${r.src ? ` src ${r.src}` : ''}`]);
  const releaseLines = (ps: string[], device: string) => ps.flatMap((p) => [`route del ${p} dev ${device}`, `route del blackhole ${p} metric ${FAIL_CLOSED_METRIC}`]);
  const steps: { steer?: { prefix: string; device: string; mtu?: number; src?: string }[]; release?: string[]; refused?: string[] }[] = [
    { steer: [ // both families mixed, host routes, a source, an mtu, two devices
      { prefix: '10.1.0.0/24', device: 'veil-st0' }, { prefix: 'fd00:1::/64', device: 'veil-st0', src: 'fd77::1' },
      { prefix: '10.2.0.5', device: 'veil-st0', src: '10.77.0.1', mtu: 1380 }, { prefix: 'fd00:2::5/128', device: 'veil-st2', mtu: 1400 },
      { prefix: '10.3.0.0/16', device: 'veil-st2' }] },
    { steer: [ // replaced in place: a source added and dropped, an mtu changed, a device moved
      { prefix: '10.1.0.0/24', device: 'veil-st0', src: '10.77.0.1' }, { prefix: 'fd00:1::/64', device: 'veil-st0', mtu: 1300 },
      { prefix: '10.2.0.5', device: 'veil-st0', mtu: 1420 }, { prefix: '10.3.0.0/16', device: 'veil-st0' }] },
    { release: ['10.3.0.0/16', 'fd00:2::5/128', '10.9.0.0/24'] }, // 10.9: never routed, fine; 10.3 moved to veil-st0: its route stays (the blackhole goes)
    { steer: [ // refused: a source the node lacks, a device that is not there; the others still written
      { prefix: '10.4.0.0/24', device: 'veil-st0', src: '192.0.2.99' }, { prefix: '10.5.0.0/24', device: 'veil-st0' },
      { prefix: 'fd00:6::/64', device: 'veil-nodev' }, { prefix: 'fd00:7::/64', device: 'veil-st2' }],
    refused: ['10.4.0.0/24', 'fd00:6::/64'] },
  ];
  for (const step of steps) {
    if (step.steer && step.refused) {
      assert.throws(() => steerIntoTunnel(step.steer!, nl), (e: Error) => {
        assert.match(e.message, /routing 4 prefix\(es\) into the tunnel failed for 2: /);
        assert.match(e.message, /10\.4\.0\.0\/24 \(dev veil-st0 src 192\.0\.2\.99\): .*\(EINVAL\)/);
        assert.match(e.message, /fd00:6::\/64 \(dev veil-nodev\): no such device \(ENODEV\)/);
        return true;
      });
      assert.notEqual(ipBatch(steerLines(step.steer)).status, 0, 'ip refused them too');
    } else if (step.steer) {
      steerIntoTunnel(step.steer, nl);
      assert.equal(ipBatch(steerLines(step.steer)).status, 0);
    } else {
      releasePrefixes(step.release!, 'veil-st2', nl);
      ipBatch(releaseLines(step.release!, 'veil-st2'));
    }
    assert.deepEqual(wholeTable(nl), wholeTable(ip), `after ${JSON.stringify(step)}`);
  }
  // The table itself, as ip lists it: each prefix's route over its blackhole, the refused ones fail-closed.
  const main = (fam: string) => mustRun(['ip', '-n', nl, fam, 'route', 'show', 'table', 'main']).trim().split('\n').map((l) => l.trim()).sort();
  assert.deepEqual(main('-4'), [
    '10.1.0.0/24 dev veil-st0 scope link src 10.77.0.1',
    '10.2.0.5 dev veil-st0 scope link mtu 1420',
    '10.3.0.0/16 dev veil-st0 scope link',
    '10.5.0.0/24 dev veil-st0 scope link',
    'blackhole 10.1.0.0/24 metric 4242',
    'blackhole 10.2.0.5 metric 4242',
    'blackhole 10.4.0.0/24 metric 4242',
    'blackhole 10.5.0.0/24 metric 4242',
  ]);
  assert.deepEqual(main('-6'), [
    'blackhole fd00:1::/64 dev lo metric 4242 pref medium',
    'blackhole fd00:6::/64 dev lo metric 4242 pref medium',
    'blackhole fd00:7::/64 dev lo metric 4242 pref medium',
    'fd00:1::/64 dev veil-st0 metric 1024 mtu 1300 pref medium',
    'fd00:7::/64 dev veil-st2 metric 1024 pref medium',
    'fd77::1 dev veil-st0 proto kernel metric 256 pref medium',
  ]);
  // Released on their own device: everything of the steering goes, the host's own route stays.
  releasePrefixes(['10.1.0.0/24', '10.2.0.5', '10.3.0.0/16', '10.4.0.0/24', '10.5.0.0/24', 'fd00:1::/64', 'fd00:6::/64'], 'veil-st0', nl);
  releasePrefixes(['fd00:7::/64'], 'veil-st2', nl);
  assert.deepEqual(main('-4'), ['']);
  assert.deepEqual(main('-6'), ['fd77::1 dev veil-st0 proto kernel metric 256 pref medium']);
  // Many to a sendmsg (several exchanges here): every one written, the refused one in the middle reported alone.
  const many = Array.from({ length: 300 }, (_, i) => ({ prefix: i % 2 ? `10.${100 + (i >> 8)}.${i & 255}.0/24` : `fd00:a:${i.toString(16)}::/64`, device: 'veil-st0', src: i === 151 ? '192.0.2.99' : undefined }));
  assert.throws(() => steerIntoTunnel(many, nl), /failed for 1: 10\.100\.151\.0\/24 \(dev veil-st0 src 192\.0\.2\.99\)/);
  const listed = [...main('-4'), ...main('-6')];
  assert.equal(listed.filter((l) => l.startsWith('blackhole ')).length, 300);
  assert.equal(listed.filter((l) => / dev veil-st0 /.test(l) && !l.startsWith('fd77::1')).length, 299);
  releasePrefixes(many.map((r) => r.prefix), 'veil-st0', nl);
  assert.deepEqual(main('-4'), ['']);
  assert.throws(() => steerIntoTunnel([{ prefix: '10.1.0.0/24', device: 'veil-st0' }], `veil-none-${process.pid}`),
    /the netlink exchange in netns veil-none-\d+: no such file or directory \(ENOENT\)/);
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
