// No peer prefix over the node's own underlay: the routing table is read into connected routes and
// addresses the node must reach directly, and a peer whose pod CIDR overlaps or contains them (or
// whose address is one of them) is refused, naming the route. A forged object with the underlay,
// or the etcd member's subnet, as its pod CIDR once cut a whole cluster off for good (#14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnderlayScreen, screenAgainstUnderlay } from '../../src/agent/peer-admission.js';
import { readUnderlayFacts, underlayFactsFrom } from '../../src/agent/underlay-routes.js';
import { TUNNEL_DEVICES } from '../../src/agent/installer.js';
import { mustRun, run } from '../../src/util/exec.js';
import { routeWatchNetns } from './fixtures/route-watch-netns.js';

test('the routing table gives the connected routes and the gateways; veil tunnels and blackholes are not the underlay', () => {
  const facts = underlayFactsFrom([
    { dst: 'default', gateway: '192.168.1.1', dev: 'eth1' },
    { dst: '172.18.0.0/16', dev: 'eth0', scope: 'link' },
    { dst: '10.244.1.2', dev: 'veil-pa', scope: 'link' },
    { dst: '10.244.2.0/24', dev: 'veil_ipsec0', scope: 'link' },
    { dst: '10.244.2.0/24', type: 'blackhole' },
    { dst: '10.96.0.0/12', gateway: '172.18.0.9', dev: 'eth0' },
  ], 4, ['veil_wg0', 'veil_ipsec0']);
  assert.deepEqual(facts.connected, [{ prefix: '172.18.0.0/16', dev: 'eth0' }, { prefix: '10.244.1.2/32', dev: 'veil-pa' }]);
  assert.deepEqual(facts.viaGateway, [{ prefix: '10.96.0.0/12', gateway: '172.18.0.9' }]);
  assert.deepEqual(facts.addresses, [{ ip: '192.168.1.1', what: 'the default gateway of this node' }]);
});

test('peers over the underlay are refused with the route they would cut; a peer own plaintext pod route may be replaced', () => {
  const underlay = {
    connected: [{ prefix: '172.18.0.0/16', dev: 'eth0' }],
    viaGateway: [
      { prefix: '10.244.2.0/24', gateway: '172.18.0.4' }, // w2's pods through w2: the plaintext route veil replaces
      { prefix: '10.96.0.0/12', gateway: '172.18.0.9' }, // services through a router
    ],
    addresses: [{ ip: '192.168.1.1', what: 'the default gateway of this node' }, { ip: '10.0.0.9', what: 'an etcd endpoint of this agent' }],
  };
  const peer = (name: string, ip: string, cidr: string) => ({ name, internalIPs: [ip], podCIDRs: [cidr] });
  const { admitted, refused } = screenAgainstUnderlay([
    peer('w2', '172.18.0.4', '10.244.2.0/24'),
    peer('etcdnet', '172.18.0.250', '172.18.255.0/24'), // the etcd member's /24, no node address in it
    peer('wide', '172.18.0.251', '0.0.0.0/0'),
    peer('gw', '172.18.0.252', '192.168.0.0/16'), // contains the default gateway
    peer('etcdip', '10.0.0.9', '10.244.9.0/24'), // node encryption would route the registry into the tunnel
    peer('services', '172.18.0.253', '10.96.0.0/16'), // over the route to the services
    peer('router', '172.18.0.9', '10.244.8.0/24'), // the services' gateway posing as a node
  ], underlay);
  assert.deepEqual(admitted.map((p) => p.name), ['w2']);
  const cut = ': routing it into the tunnel would cut this node off its underlay';
  assert.deepEqual(Object.fromEntries(refused), {
    'peer etcdnet': `node object refused: its pod CIDR 172.18.255.0/24 overlaps the connected route 172.18.0.0/16 dev eth0 of this node${cut}`,
    'peer wide': `node object refused: its pod CIDR 0.0.0.0/0 overlaps the connected route 172.18.0.0/16 dev eth0 of this node${cut}`,
    'peer gw': `node object refused: its pod CIDR 192.168.0.0/16 contains 192.168.1.1, the default gateway of this node${cut}`,
    'peer etcdip': `node object refused: its address 10.0.0.9 is an etcd endpoint of this agent${cut}`,
    'peer services': `node object refused: its pod CIDR 10.96.0.0/16 overlaps the route 10.96.0.0/12 via 172.18.0.9 of this node${cut}`,
    'peer router': `node object refused: its address 172.18.0.9 is the gateway of the route 10.96.0.0/12 of this node${cut}`,
  });
});

test('the screen of every pass keeps a peer object\'s verdict until the underlay changes, and decides as the one-off screen', () => {
  const slots = new Map<string, number>(); // as a node source: a name keeps its slot
  const peer = (name: string, ip: string, cidr: string) => ({ name, slot: slots.get(name) ?? slots.set(name, slots.size).size - 1, internalIPs: [ip], podCIDRs: [cidr] });
  const w2 = peer('w2', '172.18.0.4', '10.244.2.0/24');
  const etcdnet = peer('etcdnet', '172.18.0.250', '172.18.255.0/24');
  const services = peer('services', '172.18.0.253', '10.96.0.0/16');
  const before = { connected: [{ prefix: '172.18.0.0/16', dev: 'eth0' }], viaGateway: [], addresses: [] };
  const after = { ...before, viaGateway: [{ prefix: '10.96.0.0/12', gateway: '172.18.0.9' }] };
  const screen = new UnderlayScreen<typeof w2>();
  const names = (r: { admitted: { name: string }[] }) => r.admitted.map((p) => p.name);
  for (const u of [before, before, after, after, before]) {
    const peers = [w2, etcdnet, services];
    const once = screenAgainstUnderlay(peers, u);
    const kept = screen.screen(peers, structuredClone(u)); // an equal underlay read again is the same underlay
    assert.deepEqual(names(kept), names(once));
    assert.deepEqual(kept.refused, once.refused);
  }
  assert.deepEqual(names(screen.screen([w2, etcdnet, services], after)), ['w2'], 'a route that came up refuses the peer over it');
  assert.deepEqual(names(screen.screen([w2, etcdnet, services], before)), ['w2', 'services'], 'and admits it again once the route is gone');
  // a node changed: a new peer object, decided afresh
  const moved = peer('w2', '172.18.0.4', '172.18.254.0/24');
  assert.deepEqual(names(screen.screen([moved, services], before)), ['services']);
});

test('read from a real routing table device by device, the facts are those of the whole table, without reading the tunnels\' routes', { timeout: 60_000 }, () => {
  const ns = `veil-tus-${process.pid}`;
  const ipn = ['ip', '-n', ns];
  try {
    mustRun(['ip', 'netns', 'add', ns]);
    mustRun([...ipn, 'link', 'add', 'veil-us0', 'type', 'veth', 'peer', 'name', 'veil-us1']);
    mustRun([...ipn, 'link', 'add', 'veil_ipsec0', 'type', 'veth', 'peer', 'name', 'veil-us2']); // stands for the tunnel device
    for (const l of ['lo', 'veil-us0', 'veil-us1', 'veil_ipsec0', 'veil-us2']) mustRun([...ipn, 'link', 'set', l, 'up']);
    mustRun([...ipn, 'addr', 'add', '10.81.0.1/24', 'dev', 'veil-us0']);
    mustRun([...ipn, '-6', 'addr', 'add', 'fd81::1/64', 'dev', 'veil-us0', 'nodad']);
    mustRun([...ipn, 'route', 'add', 'default', 'via', '10.81.0.254']);
    mustRun([...ipn, 'route', 'add', '10.90.0.0/16', 'via', '10.81.0.253']);
    mustRun([...ipn, 'route', 'add', '10.91.0.0/24', 'dev', 'veil-us1']); // connected by hand, not the kernel's
    for (let i = 0; i < 20; i++) { // the tunnel's steering: a route and a blackhole a peer
      mustRun([...ipn, 'route', 'add', 'blackhole', `10.100.${i}.0/24`, 'metric', '4242']);
      mustRun([...ipn, 'route', 'add', `10.100.${i}.0/24`, 'dev', 'veil_ipsec0']);
    }
    const whole = (family: 4 | 6) => underlayFactsFrom(JSON.parse(mustRun([...ipn, `-${family}`, '-j', 'route', 'show', 'table', 'main'])), family, TUNNEL_DEVICES);
    const expected = [whole(4), whole(6)];
    const got = readUnderlayFacts(TUNNEL_DEVICES, [{ ip: '10.81.0.9', what: 'the registry' }], ns);
    const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
    assert.deepEqual(sorted(got.connected), sorted(expected.flatMap((f) => f.connected)));
    assert.deepEqual(sorted(got.viaGateway), sorted(expected.flatMap((f) => f.viaGateway)));
    assert.deepEqual(sorted(got.addresses), sorted([{ ip: '10.81.0.9', what: 'the registry' }, ...expected.flatMap((f) => f.addresses)]));
    assert.ok(got.connected.some((c) => c.prefix === '10.91.0.0/24' && c.dev === 'veil-us1'), 'a connected route added by hand counts');
    assert.ok(got.connected.some((c) => c.prefix === '10.81.0.0/24') && got.viaGateway.some((g) => g.prefix === '10.90.0.0/16'));
    assert.ok(!got.connected.some((c) => c.prefix.startsWith('10.100.')), "the tunnel's routes are not the underlay");
  } finally {
    run(['ip', 'netns', 'del', ns]);
  }
});

test('the facts are read again only when the underlay moved: not for the tunnel\'s own routes and blackholes, but for a new connected route, a link, or other extra addresses', { timeout: 60_000 }, () => {
  const net = routeWatchNetns('uw', 82);
  try {
    // The reader watches its own netns: it runs in a node process inside it, which reports what each read returned.
    const script = `
      import { UnderlayFactsReader } from ${JSON.stringify(new URL('../../src/agent/underlay-routes.js', import.meta.url).href)};
      import { TUNNEL_DEVICES } from ${JSON.stringify(new URL('../../src/agent/installer.js', import.meta.url).href)};
      import { mustRun } from ${JSON.stringify(new URL('../../src/util/exec.js', import.meta.url).href)};
      const r = new UnderlayFactsReader(TUNNEL_DEVICES);
      const out = { watching: r.watching, steps: [] };
      let last = r.read();
      const step = (what, extra) => { const f = r.read(extra); out.steps.push({ what, reread: f !== last, connected: f.connected.map((c) => c.prefix) }); last = f; };
      step('nothing moved');
      mustRun(['ip', 'route', 'add', '10.100.1.0/24', 'dev', 'veil_ipsec0']);
      mustRun(['ip', 'route', 'add', 'blackhole', '10.100.2.0/24', 'metric', '4242']);
      mustRun(['ip', 'route', 'del', '10.100.1.0/24', 'dev', 'veil_ipsec0']);
      step('the tunnel route and a blackhole');
      mustRun(['ip', 'route', 'add', '10.92.0.0/24', 'dev', 'veil-uw1']);
      step('a connected route');
      step('nothing moved again');
      mustRun(['ip', 'link', 'set', 'veil-uw1', 'down']);
      step('a link down');
      step('other extra addresses', [{ ip: '10.82.0.9', what: 'the registry' }]);
      r.close();
      console.log(JSON.stringify(out));`;
    const out = net.runIn<{ watching: boolean; steps: { what: string; reread: boolean; connected: string[] }[] }>(script);
    assert.ok(out.watching, 'the netlink socket opened');
    assert.deepEqual(out.steps.map((s) => [s.what, s.reread]), [
      ['nothing moved', false], ['the tunnel route and a blackhole', false], ['a connected route', true],
      ['nothing moved again', false], ['a link down', true], ['other extra addresses', true],
    ]);
    assert.ok(out.steps[2]!.connected.includes('10.92.0.0/24'), 'the new connected route is in the facts');
    assert.ok(!out.steps[4]!.connected.includes('10.92.0.0/24'), 'its link down took it away');
  } finally {
    net.remove();
  }
});
