// Registry objects, the way a hostile writer with etcd access would send them: any key and any
// value through the etcd backend's decoding (object-codec.ts), the decoded Node and Lease objects
// through the real node source (RegistryNodeSource: addresses, peer admission) and the peers it
// admits through WireGuard mode's desired state. Never a throw; admitted peers never collide;
// every WireGuard peer has a valid, unique key that is not ours; encode -> decode round-trips.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { IKeyValue } from 'etcd3';
import { admitPeers } from '../../src/agent/peer-admission.js';
import { RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { WG_PUBKEY_ANNOTATION, WireGuardMode } from '../../src/agent/wireguard-mode.js';
import { Health } from '../../src/agent/health.js';
import { decodeObject, encodeObject } from '../../src/control/etcd/object-codec.js';
import { objectKey } from '../../src/control/etcd/keys.js';
import { checkObject, KINDS } from '../../src/control/object-checks.js';
import type { Kind, Registry, RegistryObject } from '../../src/control/registry.js';
import type { SecretSource } from '../../src/agent/agent-inputs.js';
import { parseIp } from '../../src/net/cidr.js';
import { createLogger } from '../../src/util/log.js';
import { listOf } from '../../src/util/one-or-more.js';
import { harness, scratchDir } from './harness.js';

const CLUSTER = 'fuzz';
const SELF = 'self';

/** Values a node's fields take, good and bad. */
const ipText = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('10.0.0.1', '10.0.0.2', '::', 'not-an-ip', '', '10.0.0.1/24', '256.1.1.1'));
const cidrText = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 33 })).map(([a, n]) => `${a}/${n}`),
  fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.${a}.${b}.0/24`),
  fc.constantFrom('10.244.1.0/24', '10.244.2.0/24', '10.0.0.0/8', '0.0.0.0/0', 'fd00::/64', '10.244.1.5/24', 'x/24', '10.244.3.0'),
);
const pubKey = fc.oneof(
  fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64')),
  fc.constantFrom('A'.repeat(43) + '=', 'short', '', '!'.repeat(43) + '='),
  fc.string({ maxLength: 50 }),
);
const anyJson = fc.jsonValue({ maxDepth: 2 });
const scalarOr = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: a, weight: 15 }, { arbitrary: anyJson, weight: 1 });

const nodeName = fc.oneof(fc.constantFrom(SELF, 'n1', 'n2', 'n3', 'n4'), fc.string({ maxLength: 8 }));

/** A Node object as JSON: mostly well-formed, with any field possibly of the wrong type. */
const nodeValue = (name: string) => fc.record({
  kind: scalarOr(fc.constant('Node')),
  metadata: scalarOr(fc.record({
    name: scalarOr(fc.constant(name)),
    creationTimestamp: scalarOr(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())),
    annotations: scalarOr(fc.dictionary(fc.constantFrom(WG_PUBKEY_ANNOTATION, 'x'), scalarOr(pubKey))),
  }, { requiredKeys: ['name'] })),
  spec: scalarOr(fc.record({
    internalIP: scalarOr(ipText), internalIPs: scalarOr(fc.array(scalarOr(ipText), { maxLength: 3 })),
    podCIDR: scalarOr(cidrText), podCIDRs: scalarOr(fc.array(scalarOr(cidrText), { maxLength: 3 })),
    podGateway: scalarOr(ipText), mtu: scalarOr(fc.integer()), underlayInterface: scalarOr(fc.string({ maxLength: 4 })),
    encryption: scalarOr(fc.record({ key: scalarOr(fc.integer({ min: 0, max: 300 })) })),
  }, { requiredKeys: [] })),
  status: scalarOr(fc.record({ agent: scalarOr(fc.record({ ready: scalarOr(fc.boolean()), bootID: scalarOr(fc.uuid()) })) })),
}, { requiredKeys: ['kind', 'metadata'] });

/** An etcd key-value as a writer could put it: a node, a lease, or any value under any key. */
const storedKv = fc.oneof(
  { weight: 6, arbitrary: nodeName.chain((n) => nodeValue(n).map((v) => ({ key: objectKey(CLUSTER, 'Node', n), value: JSON.stringify(v) }))) },
  { weight: 3, arbitrary: nodeName.map((n) => ({ key: objectKey(CLUSTER, 'Lease', n), value: JSON.stringify({ kind: 'Lease', metadata: { name: n }, spec: {} }) })) },
  { weight: 1, arbitrary: fc.record({ key: fc.oneof(fc.constantFrom(...KINDS).chain((k) => nodeName.map((n) => objectKey(CLUSTER, k, n))), fc.string({ maxLength: 30 })), value: fc.oneof(fc.string({ maxLength: 40 }), anyJson.map((j) => JSON.stringify(j))) }) },
);

function kv(key: string, value: string, rev: number): IKeyValue {
  return { key: Buffer.from(key), value: Buffer.from(value), mod_revision: String(rev), create_revision: String(rev), version: '1', lease: '0' };
}

/** A registry holding what decodeObject accepted, and naming what it refused, like the etcd backend. */
class DecodedRegistry {
  readonly objects: RegistryObject[] = [];
  readonly invalid: { key: string; reason: string }[] = [];
  async list(kind: Kind): Promise<RegistryObject[]> { return this.objects.filter((o) => o.kind === kind); }
  async revision(): Promise<number> { return 1; }
  watch() { return { stop() { /* nothing to stop */ } }; }
  invalidObjects() { return this.invalid; }
  close(): void { /* nothing to close */ }
}

let mode: WireGuardMode | undefined;
const seen = { decoded: 0, refusedValues: 0, admitted: 0, refusedPeers: 0, wgPeers: 0 };

/** WireGuard mode as the agent runs it, with a key pair in a temporary state directory. */
async function wireguardMode(): Promise<WireGuardMode> {
  if (mode) return mode;
  const stateDir = scratchDir('wg-mode');
  const settings = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' as const };
  const node = { name: SELF, internalIPs: ['10.0.0.1'], podCIDRs: ['10.244.0.0/24'], podGateway: '10.244.0.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'x' };
  mode = new WireGuardMode({
    node, stateDir, settings, secrets: undefined as unknown as SecretSource, log: createLogger({}, { write: () => true } as unknown as NodeJS.WritableStream),
    health: new Health(), requestReconcile: () => undefined,
  });
  await mode.prepare();
  return mode;
}

const sameAddr = (a: string, b: string) => Buffer.compare(parseIp(a).bytes, parseIp(b).bytes) === 0;

export const registryObjects = harness({
  name: 'registry',
  target: 'src/control/etcd/object-codec.ts decodeObject -> src/agent/registry-node-source.ts + peer-admission.ts -> wireguard-mode.ts desired()',
  runs: 200_000,
  ciRuns: 3_000,
  property: () => fc.asyncProperty(fc.array(storedKv, { maxLength: 8 }), fc.subarray(['n1', 'n2', 'n3', 'n4']), async (objects, live) => {
    const reg = new DecodedRegistry();
    const leases = live.map((n) => ({ key: objectKey(CLUSTER, 'Lease', n), value: JSON.stringify({ kind: 'Lease', metadata: { name: n }, spec: {} }) }));
    const stored = [...leases, ...objects];
    stored.forEach(({ key, value }, i) => {
      const d = decodeObject(CLUSTER, kv(key, value, i + 2));
      if (!d.ok) { seen.refusedValues++; assert.ok(d.reason.length > 0); reg.invalid.push({ key: d.key, reason: d.reason }); return; }
      seen.decoded++;
      checkObject(d.object); // what decodes is an object every backend would have stored
      reg.objects.push(d.object);
      // Round trip: encoding what we decoded gives the same object back.
      const again = decodeObject(CLUSTER, kv(key, encodeObject(d.object), i + 2));
      assert.ok(again.ok);
      assert.deepEqual(again.object, d.object);
    });
    const source = new RegistryNodeSource(reg as unknown as Registry, SELF);
    try {
      await source.watchPeers(() => undefined);
      const peers = source.peers();
      const refused = source.refusedPeers();
      seen.admitted += peers.length;
      seen.refusedPeers += refused.size;
      for (const [k, why] of refused) assert.ok(k.startsWith('peer ') && why.length > 0);
      // Admitted peers never claim each other's addresses or pod CIDRs.
      const again = admitPeers(undefined, peers.map((p) => ({ name: p.name, internalIPs: p.internalIPs, podCIDRs: p.podCIDRs })));
      assert.equal(again.admitted.length, peers.length, `admitted peers collide: ${[...again.refused.values()].join('; ')}`);
      for (const p of peers) assert.ok(listOf(p.internalIPs).every((ip) => parseIp(ip)) && sameAddr(p.internalIP, listOf(p.internalIPs)[0]!));
      const wg = await wireguardMode();
      const desired = wg.desired(peers);
      const keys = desired.datapathPeers.map((s) => s.publicKey);
      seen.wgPeers += keys.length;
      assert.equal(new Set(keys).size, keys.length, 'two WireGuard peers share a key');
      for (const k of keys) {
        assert.equal(Buffer.from(k, 'base64').length, 32);
        assert.notEqual(k, desired.publish.annotations[WG_PUBKEY_ANNOTATION], 'a peer uses our own key');
      }
    } finally {
      source.close();
    }
  }),
  report: () => `values decoded ${seen.decoded}, refused ${seen.refusedValues}; peers admitted ${seen.admitted}, refused ${seen.refusedPeers}; WireGuard peers ${seen.wgPeers}`,
});

export const harnesses = [registryObjects];
