// The lab's pure pieces: addresses, names, option checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocatePodIP, etcdMemberAddress, ipv6PodRange, ipv6Underlay, nodeAddressing, nodeIpv6Addressing, parseLabSubnet, podIpv6 } from '../../src/lab/addressing.js';
import { formatCidr } from '../../src/net/cidr.js';
import { cidrsOverlap } from '../../src/net/cidr.js';
import { etcdNetns, fabricNetns, netnsPrefix, nodeNames, nodeNetns, podHostInterface, podNetns } from '../../src/lab/names.js';
import { validateLabOptions } from '../../src/lab/lifecycle.js';
import { formatAge } from '../../src/lab/objects.js';
import { nodeReady } from '../../src/agent/registry-node-source.js';
import { isVeilError } from '../../src/util/errors.js';

const code = (c: string) => (e: unknown) => isVeilError(e) && e.code === c;

test('dual stack: IPv6 prefixes derived from the IPv4 ones, a /64 per node, pods at the host number of their IPv4 address', () => {
  const u = parseLabSubnet('172.18.0.0/16'), p = parseLabSubnet('10.244.0.0/16');
  assert.equal(formatCidr(ipv6Underlay(u)), 'fd12:ac12::/64');
  assert.equal(formatCidr(ipv6PodRange(p)), 'fd10:af4::/48');
  assert.deepEqual(nodeIpv6Addressing(0, u, p), { internalIP: 'fd12:ac12::2', underlayPrefix: 64, podCIDR: 'fd10:af4::/64', podGateway: 'fd10:af4::1' });
  assert.deepEqual(nodeIpv6Addressing(3, u, p), { internalIP: 'fd12:ac12::5', underlayPrefix: 64, podCIDR: 'fd10:af4:0:3::/64', podGateway: 'fd10:af4:0:3::1' });
  assert.equal(podIpv6('10.244.3.0/24', 'fd10:af4:0:3::/64', '10.244.3.2'), 'fd10:af4:0:3::2');
  assert.equal(podIpv6('10.244.3.0/24', 'fd10:af4:0:3::/64', '10.244.3.254'), 'fd10:af4:0:3::fe');
  // Labs whose IPv4 subnets do not overlap get IPv6 prefixes that do not either.
  assert.equal(cidrsOverlap(ipv6PodRange(p), ipv6PodRange(parseLabSubnet('10.245.0.0/16'))), false);
  assert.equal(cidrsOverlap(ipv6Underlay(u), ipv6Underlay(parseLabSubnet('172.19.0.0/16'))), false);
  assert.equal(validateLabOptions({ ipFamily: 'dual' }).ipFamily, 'dual');
  assert.throws(() => validateLabOptions({ ipFamily: 'ipv5' as 'dual' }), (e: unknown) => isVeilError(e) && e.code === 'BAD_FLAG' && /ipv4, ipv6, dual/.test(e.message));
  assert.throws(() => validateLabOptions({ ipFamily: 'dual', mtu: 1300 }), (e: unknown) => isVeilError(e) && /IPv6 needs 1280/.test(e.message));
  assert.equal(validateLabOptions({ ipFamily: 'dual', underlayFamily: 'ipv6' }).underlayFamily, 'ipv6');
  assert.throws(() => validateLabOptions({ underlayFamily: 'ipv6' }), (e: unknown) => isVeilError(e) && e.code === 'BAD_FLAG' && /--ip-family dual/.test(e.hint ?? ''));
  assert.throws(() => validateLabOptions({ ipFamily: 'dual', underlayFamily: 'ip6' as 'ipv6' }), code('BAD_FLAG'));
});

test('IPv6 only: the tunnels are IPv6 (its only family), IPv6 MTU floor, etcd at the IPv4 host number in the IPv6 underlay, pods ::2 upwards', () => {
  const o = validateLabOptions({ ipFamily: 'ipv6' });
  assert.deepEqual([o.ipFamily, o.underlayFamily], ['ipv6', 'ipv6']);
  assert.throws(() => validateLabOptions({ ipFamily: 'ipv6', underlayFamily: 'ipv4' }), (e: unknown) => isVeilError(e) && e.code === 'BAD_FLAG' && /IPv6-only lab has none/.test(e.message));
  assert.throws(() => validateLabOptions({ ipFamily: 'ipv6', mtu: 1300 }), (e: unknown) => isVeilError(e) && /--ip-family ipv6: IPv6 needs 1280/.test(e.message));
  const u = parseLabSubnet('172.18.0.0/16');
  assert.deepEqual([0, 1].map((i) => etcdMemberAddress(i, u, 4, 6)), ['fd12:ac12::fffe', 'fd12:ac12::fffd']);
  assert.equal(allocatePodIP('fd10:af4:0:1::/64', []), 'fd10:af4:0:1::2');
  assert.equal(allocatePodIP('fd10:af4:0:1::/64', ['fd10:af4:0:1::2', 'fd10:af4:0:1::4']), 'fd10:af4:0:1::3');
  const all = Array.from({ length: 253 }, (_, i) => `fd10:af4:0:1::${(i + 2).toString(16)}`);
  assert.throws(() => allocatePodIP('fd10:af4:0:1::/64', all), code('POD_CIDR_FULL'), 'as many pods per node as an IPv4 /24 holds');
});

test('node addressing follows kind: .2 upwards on the underlay, one /24 per node', () => {
  const u = parseLabSubnet('172.18.0.0/16'), p = parseLabSubnet('10.244.0.0/16');
  assert.deepEqual(nodeAddressing(0, u, p), { internalIP: '172.18.0.2', underlayPrefix: 16, podCIDR: '10.244.0.0/24', podGateway: '10.244.0.1' });
  assert.deepEqual(nodeAddressing(3, u, p), { internalIP: '172.18.0.5', underlayPrefix: 16, podCIDR: '10.244.3.0/24', podGateway: '10.244.3.1' });
  assert.throws(() => nodeAddressing(2, u, parseLabSubnet('10.1.0.0/23')), code('SUBNET_TOO_SMALL'));
  assert.throws(() => nodeAddressing(2, parseLabSubnet('192.168.0.0/30'), p), code('SUBNET_TOO_SMALL'));
});

test('etcd members sit at the top of the underlay subnet, never on a node address', () => {
  const u = parseLabSubnet('172.18.0.0/16');
  assert.deepEqual([0, 1, 2].map((i) => etcdMemberAddress(i, u, 4)), ['172.18.255.254', '172.18.255.253', '172.18.255.252']);
  const small = parseLabSubnet('172.30.0.0/29'); // .1-.6 usable: nodes .2 .3 .4, members .6 .5
  assert.equal(etcdMemberAddress(1, small, 3), '172.30.0.5');
  assert.throws(() => etcdMemberAddress(2, small, 3), code('SUBNET_TOO_SMALL'));
  assert.equal(etcdNetns('kind', 0), 'veil-kind_etcd1');
});

test('pod IP allocation takes the lowest free address from .2', () => {
  assert.equal(allocatePodIP('10.244.1.0/24', []), '10.244.1.2');
  assert.equal(allocatePodIP('10.244.1.0/24', ['10.244.1.2', '10.244.1.4']), '10.244.1.3');
  const all = Array.from({ length: 253 }, (_, i) => `10.244.1.${i + 2}`);
  assert.throws(() => allocatePodIP('10.244.1.0/24', all), code('POD_CIDR_FULL'));
});

test('CIDR parsing and overlap', () => {
  for (const bad of ['10.244.0.0', '10.244.0.0/33', '10.244.0.1/16', '300.1.1.1/8', 'x/8']) assert.throws(() => parseLabSubnet(bad), code('BAD_CIDR'), bad);
  assert.ok(cidrsOverlap(parseLabSubnet('10.0.0.0/8'), parseLabSubnet('10.244.0.0/16')));
  assert.ok(!cidrsOverlap(parseLabSubnet('172.18.0.0/16'), parseLabSubnet('172.19.0.0/16')));
});

test('names: kind-style nodes, namespaces with a per-cluster prefix, short link names', () => {
  assert.deepEqual(nodeNames('kind', 4), ['kind-control-plane', 'kind-worker', 'kind-worker2', 'kind-worker3']);
  assert.equal(nodeNetns('kind', 'kind-worker2'), 'veil-kind_worker2');
  assert.equal(fabricNetns('kind'), 'veil-kind_fabric');
  assert.equal(podNetns('kind', 'pod-worker'), 'veil-kind_pod_pod-worker');
  // no other cluster's namespaces can share a cluster's prefix ('_' is not allowed in cluster names)
  assert.ok(!nodeNetns('kind-x', 'kind-x-worker').startsWith(netnsPrefix('kind')));
  const ifname = podHostInterface('a-very-long-pod-name-indeed');
  assert.match(ifname, /^veil[0-9a-f]{8}$/);
  assert.notEqual(ifname, podHostInterface('another'));
});

test('lab options are checked before anything is created', () => {
  assert.deepEqual(validateLabOptions({}), { name: 'kind', nodes: 4, mtu: 1500, underlaySubnet: '172.18.0.0/16', podCIDR: '10.244.0.0/16', etcdMembers: 1, etcdAuth: true, ipFamily: 'ipv4', underlayFamily: 'ipv4' });
  assert.throws(() => validateLabOptions({ etcdMembers: 2 }), code('BAD_FLAG'));
  assert.throws(() => validateLabOptions({ name: 'Bad_Name' }), code('INVALID_CLUSTER_NAME'));
  assert.throws(() => validateLabOptions({ nodes: 0 }), code('BAD_FLAG'));
  assert.throws(() => validateLabOptions({ mtu: 100 }), code('BAD_FLAG'));
  assert.throws(() => validateLabOptions({ podCIDR: '172.18.0.0/20' }), code('SUBNET_OVERLAP'));
  assert.throws(() => validateLabOptions({ podCIDR: '10.1.0.0/24', nodes: 2 }), code('SUBNET_TOO_SMALL'));
});

test('a node is Ready only with a live liveness lease and a ready report', () => {
  const node = (agent: unknown) => ({ kind: 'Node' as const, metadata: { name: 'n' }, status: agent === undefined ? {} : { agent } });
  const lease = { kind: 'Lease' as const, metadata: { name: 'n' }, spec: { renewTime: new Date().toISOString(), ttlSeconds: 15 } };
  assert.equal(nodeReady(node(undefined), lease), false);
  assert.equal(nodeReady(node({ ready: true }), lease), true);
  assert.equal(nodeReady(node({ ready: false }), lease), false);
  assert.equal(nodeReady(node({ ready: true }), undefined), false, 'a lapsed lease is absent from the registry');
  assert.equal(nodeReady(node({ ready: 'garbage' }), lease), false);
});

test('AGE like kubectl', () => {
  const t0 = Date.parse('2025-01-01T00:00:00Z');
  const age = (s: number) => formatAge('2025-01-01T00:00:00Z', t0 + s * 1000);
  assert.deepEqual([age(5), age(119), age(312), age(42 * 60), age(3 * 3600 + 7 * 60), age(20 * 3600), age(53 * 3600), age(12 * 86400)],
    ['5s', '119s', '5m12s', '42m', '3h7m', '20h', '2d5h', '12d']);
});
