// `veil encryption rotate-key --wireguard` writes one request id per node into the rotation
// Secret (on a real registry backend): all nodes, or the one named; an unknown node is refused
// and nothing is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import { requestWireGuardRotation, rotationRequestFor, WG_ROTATION_SECRET } from '../../src/keys/wireguard-rotation-request.js';
import { VeilError } from '../../src/util/errors.js';

test('rotation requests: every node, then one node with a new id; an unknown node is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-wgreq-'));
  const reg = new EmbeddedRegistry(dir);
  try {
    await assert.rejects(requestWireGuardRotation(reg, undefined), (e) => e instanceof VeilError && e.code === 'NO_NODES');
    for (const name of ['a', 'b', 'c']) await reg.create({ kind: 'Node', metadata: { name }, spec: {} });
    const all = await requestWireGuardRotation(reg, undefined);
    assert.deepEqual(all.nodes, ['a', 'b', 'c']);
    const ids = async () => {
      const data = (await reg.get('Secret', WG_ROTATION_SECRET))?.data;
      return Object.fromEntries(['a', 'b', 'c'].map((n) => [n, rotationRequestFor(data, n)]));
    };
    assert.deepEqual(await ids(), { a: all.id, b: all.id, c: all.id });
    const one = await requestWireGuardRotation(reg, ['b']);
    assert.notEqual(one.id, all.id, 'a new request id');
    assert.deepEqual(await ids(), { a: all.id, b: one.id, c: all.id });
    await assert.rejects(requestWireGuardRotation(reg, ['nope']), (e) => e instanceof VeilError && e.code === 'UNKNOWN_NODE' && /known nodes: a, b, c/.test(e.hint ?? ''));
    assert.deepEqual(await ids(), { a: all.id, b: one.id, c: all.id }, 'nothing written');
  } finally {
    reg.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
