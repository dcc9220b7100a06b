// Crashes the fuzz harnesses found, kept as tests (each failed before its fix).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IKeyValue } from 'etcd3';
import { RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import { applySet, defaultSettings } from '../../src/agent/settings.js';
import { loadClusterConfig } from '../../src/control/cluster-config.js';
import { decodeObject } from '../../src/control/etcd/object-codec.js';
import { loadAgentConfig } from '../../src/host/agent-config.js';
import type { Registry, RegistryObject } from '../../src/control/registry.js';
import { VeilError } from '../../src/util/errors.js';
import { scratchDir } from './harness.js';

const kv = (key: string, value: unknown): IKeyValue =>
  ({ key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)), mod_revision: '7', create_revision: '7', version: '1', lease: '0' });

test('registry fuzz: an etcd value whose metadata fields have the wrong types is refused, and the node source never throws on it', async () => {
  // Found: {"creationTimestamp": {}} was decoded, and the node source's oldest-first sort threw a
  // TypeError (localeCompare of an object) on every peers() call: one etcd write stopped every agent.
  const bad = decodeObject('c', kv('veil/c/nodes/n3', { kind: 'Node', metadata: { name: 'n3', creationTimestamp: {} } }));
  assert.deepEqual(bad, { ok: false, key: 'veil/c/nodes/n3', reason: 'metadata.creationTimestamp is not a string' });
  for (const [value, reason] of [
    [{ kind: 'Node', metadata: { name: 'n3', annotations: 'x' } }, 'metadata.annotations is not a map of strings'],
    [{ kind: 'Node', metadata: { name: 'n3', labels: { a: 1 } } }, 'metadata.labels is not a map of strings'],
    [{ kind: 'Node', metadata: { name: 'n3' }, data: { keys: 5 } }, 'data is not a map of strings'],
    [{ kind: 'Node', metadata: { name: 'n3' }, type: [] }, 'type is not a string'],
  ] as const) {
    assert.deepEqual(decodeObject('c', kv('veil/c/nodes/n3', value)), { ok: false, key: 'veil/c/nodes/n3', reason });
  }
  const good = decodeObject('c', kv('veil/c/nodes/n4', { kind: 'Node', metadata: { name: 'n4', creationTimestamp: '2026-01-01T00:00:00Z', annotations: { a: 'b' } } }));
  assert.equal(good.ok, true);
  // The node source over what a backend kept (even a number for a timestamp, as a foreign backend could hand over).
  const objects: RegistryObject[] = [
    { kind: 'Node', metadata: { name: 'n3', creationTimestamp: 5 as unknown as string }, spec: { internalIP: '10.0.0.3', podCIDR: '10.244.3.0/24' } },
    { kind: 'Node', metadata: { name: 'n4', creationTimestamp: 6 as unknown as string }, spec: { internalIP: '10.0.0.4', podCIDR: '10.244.4.0/24' } },
    { kind: 'Lease', metadata: { name: 'n3' } }, { kind: 'Lease', metadata: { name: 'n4' } },
  ];
  const reg = { list: async (k: string) => objects.filter((o) => o.kind === k), revision: async () => 1, watch: () => ({ stop() {} }), close() {} };
  const source = new RegistryNodeSource(reg as unknown as Registry, 'self');
  await source.watchPeers(() => undefined);
  assert.deepEqual(source.peers().map((p) => p.name).sort(), ['n3', 'n4']);
  source.close();
});

test('config fuzz: a YAML alias bomb in the cluster config is a BAD_CLUSTER_CONFIG error, not a ReferenceError', () => {
  // Found: the yaml library's "Excessive alias count" ReferenceError escaped loadClusterConfig.
  const path = join(scratchDir('regress'), 'config.yaml');
  writeFileSync(path, 'a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\ne: &e [*d, *d]\nf: &f [*e, *e]\n');
  assert.throws(() => loadClusterConfig(path), (e) => e instanceof VeilError && e.code === 'BAD_CLUSTER_CONFIG' && /Excessive alias count/.test(e.message));
});

test('config fuzz: --set with a key of Object.prototype (valueOf, constructor, __proto__) is an unknown setting, not a TypeError', () => {
  // Found: `key in SCHEMA` matched Object.prototype's keys, then the schema lookup threw.
  for (const key of ['valueOf', 'constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    assert.throws(() => applySet(defaultSettings(), `${key}=x`), (e) => e instanceof VeilError && e.code === 'UNKNOWN_SETTING', key);
  }
});

test('config-roundtrip fuzz: an etcd endpoint on its scheme\'s default port (http://x:80, https://x:443) is kept, not refused as "no port"', () => {
  // Found: URL.port is '' for a default port even when written, and the check said "has no port".
  const path = join(scratchDir('regress'), 'agent.yaml');
  writeFileSync(path, 'etcd:\n  endpoints: ["http://10.0.0.1:80", "http://[fd00::1]:2379"]\n');
  assert.deepEqual(loadAgentConfig({ file: path, env: {} }).etcd.endpoints, ['http://10.0.0.1:80', 'http://[fd00::1]:2379']);
  writeFileSync(path, 'etcd:\n  endpoints: https://etcd.example:443\n');
  assert.deepEqual(loadAgentConfig({ file: path, env: {} }).etcd.endpoints, ['https://etcd.example:443']);
  writeFileSync(path, 'etcd:\n  endpoints: http://10.0.0.1\n');
  assert.throws(() => loadAgentConfig({ file: path, env: {} }), /has no port/);
});
