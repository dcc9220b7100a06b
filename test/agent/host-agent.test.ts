// A host agent's registration on a real etcd: it creates its Node object from its config, takes
// its pod CIDRs from an existing object, and refuses (writing nothing) without a pod CIDR or when
// another node claims its address or pod CIDR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerNode } from '../../src/agent/host-agent.js';
import { hostInstall, hostInstallAtomic } from '../../src/agent/installer.js';
import { WG_PUBKEY_ANNOTATION } from '../../src/agent/wireguard-mode.js';
import { readSettings, writeSettings } from '../../src/agent/install-state.js';
import { defaultSettings } from '../../src/agent/settings.js';
import type { HostAgentConfig } from '../../src/host/agent-config.js';
import { isVeilError } from '../../src/util/errors.js';
import { etcdForTests } from '../control/etcd-helpers.js';

const t = etcdForTests({ members: 1 });
const underlay = { interface: 'eth0', address: '10.0.0.11', mtu: 1500 };
const config = (over: Partial<HostAgentConfig> = {}): HostAgentConfig => ({
  cluster: 'thost', nodeName: 'host-a', etcd: { endpoints: t.etcd.endpoints }, underlay: {}, podCIDRs: [],
  stateDir: '/var/lib/veil', runDir: '/run/veil', ...over,
});
const code = (c: string, what: RegExp) => (e: unknown) => isVeilError(e) && e.code === c && what.test(e.message);

test('registration: created from the config, pod CIDRs from the object, refusals write nothing', async () => {
  const reg = t.registry('thost');
  await assert.rejects(registerNode(reg, config(), underlay), code('NO_POD_CIDR', /node 'host-a' has no pod CIDR: none in the agent config and no node object/));
  assert.equal(await reg.get('Node', 'host-a'), undefined);

  await registerNode(reg, config({ podCIDRs: ['10.244.7.0/24'] }), underlay);
  const a = (await reg.get('Node', 'host-a'))!;
  assert.deepEqual(a.spec, { internalIP: '10.0.0.11', podCIDR: '10.244.7.0/24', podCIDRs: ['10.244.7.0/24'], underlayInterface: 'eth0', mtu: 1500 });
  assert.equal(a.metadata.labels?.['kubernetes.io/hostname'], 'host-a');

  // restarted without pod CIDRs in its config: the object's stay; nothing to change, nothing written
  await registerNode(reg, config(), underlay);
  assert.equal((await reg.get('Node', 'host-a'))!.metadata.resourceVersion, a.metadata.resourceVersion);

  // another host claiming host-a's address, or an overlapping pod CIDR
  const rev = await reg.revision();
  await assert.rejects(registerNode(reg, config({ nodeName: 'host-b', podCIDRs: ['10.244.8.0/24'] }), underlay),
    code('NODE_CONFLICT', /node 'host-a' already claims the address 10\.0\.0\.11 of this node 'host-b'/));
  await assert.rejects(registerNode(reg, config({ nodeName: 'host-b', podCIDRs: ['10.244.0.0/16'] }), { ...underlay, address: '10.0.0.12' }),
    code('NODE_CONFLICT', /pod CIDR 10\.244\.0\.0\/16 of node 'host-b' overlaps 10\.244\.7\.0\/24 of node 'host-a'/));
  assert.equal(await reg.revision(), rev, 'the refusals wrote nothing');

  await registerNode(reg, config({ nodeName: 'host-b', podCIDRs: ['10.244.8.0/24'] }), { ...underlay, address: '10.0.0.12' });
  assert.deepEqual((await reg.list('Node')).map((n) => n.metadata.name), ['host-a', 'host-b']);

  // a forged object made later with host-a's address and pod CIDR does not keep host-a from
  // starting again (the first claim is kept; every agent's peer admission refuses the forgery)
  await reg.create({ kind: 'Node', metadata: { name: 'forged' }, spec: { internalIP: '10.0.0.11', podCIDR: '10.244.7.0/24' } });
  await registerNode(reg, config(), underlay);
  await assert.rejects(registerNode(reg, config({ nodeName: 'host-c', podCIDRs: ['10.244.7.0/24'] }), { ...underlay, address: '10.0.0.13' }),
    code('NODE_CONFLICT', /overlaps 10\.244\.7\.0\/24 of node '(host-a|forged)'/), 'a new node is still refused');
});

test('registration of a dual-stack node: its IPv6 address stays while the underlay holds it, its IPv6 pod CIDR stays', async () => {
  const reg = t.registry('thostdual');
  const spec = { internalIP: '10.0.0.21', internalIPs: ['10.0.0.21', 'fd12::21'], podCIDR: '10.244.21.0/24', podCIDRs: ['10.244.21.0/24', 'fd10:0:0:21::/64'] };
  await reg.create({ kind: 'Node', metadata: { name: 'host-a' }, spec });
  const dual = { ...underlay, address: '10.0.0.21', addresses: ['10.0.0.21', 'fd12::21'] };
  await registerNode(reg, config({ cluster: 'thostdual' }), dual);
  const kept = (await reg.get('Node', 'host-a'))!.spec!;
  assert.deepEqual([kept['internalIPs'], kept['podCIDRs']], [spec.internalIPs, spec.podCIDRs]);
  await registerNode(reg, config({ cluster: 'thostdual' }), { ...dual, addresses: ['10.0.0.21'] }); // the IPv6 address is gone from the host
  assert.deepEqual((await reg.get('Node', 'host-a'))!.spec!['internalIPs'], ['10.0.0.21']);
});

test('install on hosts stores the settings for agents that start later, and waits for the registered ones', async () => {
  const reg = t.registry('thostinst');
  const settings = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' as const };
  assert.deepEqual(await hostInstall(reg, settings, 1000), [], 'no host yet: nothing to wait for');
  assert.equal((await readSettings(reg))?.['encryption.type'], 'wireguard');
  await registerNode(reg, config({ cluster: 'thostinst', podCIDRs: ['10.244.9.0/24'] }), underlay);
  await assert.rejects(hostInstall(reg, settings, 500), code('NOT_READY', /agents not ready after 1s on: host-a|agents not ready after 0s on: host-a/));
  await assert.rejects(hostInstall(reg, { ...settings, 'encryption.type': 'ipsec' }, 500), code('ALREADY_INSTALLED', /already installed with wireguard/));
});

test('a failed install on hosts takes back what it wrote: no settings (or the previous ones), what agents published removed; a lease kept too long is named', async () => {
  const reg = t.registry('thostroll');
  const wg = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' as const };
  await registerNode(reg, config({ cluster: 'thostroll', podCIDRs: ['10.244.9.0/24'] }), underlay);
  await reg.mutate('Node', 'host-a', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { [WG_PUBKEY_ANNOTATION]: 'k' } } });
  // nobody answers: the wait fails, the settings go, and so does what the agent had published
  await assert.rejects(hostInstallAtomic(reg, wg, 300, undefined, 2000), code('NOT_READY', /not ready after 0s on: host-a; the install was rolled back: its settings are removed/));
  assert.equal(await readSettings(reg), undefined);
  assert.equal((await reg.get('Node', 'host-a'))!.metadata.annotations?.[WG_PUBKEY_ANNOTATION], undefined);

  // an agent that holds on to its lease: the error names it instead of removing what it published
  const lease = await reg.holdLease('host-a', 15, { pid: 1 });
  try {
    await assert.rejects(hostInstallAtomic(reg, wg, 300, undefined, 500), code('NOT_READY', /the agents on host-a have not let go of their leases in 1s/));
    assert.equal(await readSettings(reg), undefined);
  } finally {
    await lease.release();
  }

  // installed before: a failed re-install puts the previous settings back
  await writeSettings(reg, { ...wg, 'agent.metricsPort': 9999 });
  await assert.rejects(hostInstallAtomic(reg, { ...wg, 'agent.metricsPort': 9000 }, 300), code('NOT_READY', /the previous settings are back/));
  assert.equal((await readSettings(reg))?.['agent.metricsPort'], 9999);
});
