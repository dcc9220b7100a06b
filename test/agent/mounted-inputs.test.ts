// A mounted Secret as the kubelet updates it (a new timestamped directory, ..data swapped by one
// rename): the agent's watch delivers each new content whole, once, and the secret's removal; a
// watch on a directory that is not there yet still sees it appear (the poll alone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MountedSecrets } from '../../src/agent/mounted-inputs.js';
import { atomicWrite } from '../kube-api/kubelet-volumes.js';
import type { RegistryObject } from '../../src/control/registry.js';

const text = (s: RegistryObject | undefined) => (s ? Buffer.from(s.data!.keys!, 'base64').toString() : undefined);

/** Collects what the watch delivers; next() resolves with the next delivery. */
function deliveries() {
  const got: (string | undefined)[] = [];
  let wake: (() => void) | undefined;
  return {
    got,
    onChange: (s: RegistryObject | undefined) => { got.push(text(s)); wake?.(); },
    next: (n: number) => new Promise<void>((resolve) => { wake = () => { if (got.length >= n) resolve(); }; wake(); }),
  };
}

test('a mounted secret\'s swaps are delivered whole and once each, then its removal; nothing after stop', async () => {
  const root = mkdtempSync(join(tmpdir(), 'veil-mounted-'));
  const dir = join(root, 'ipsec-keys');
  try {
    atomicWrite(dir, { keys: Buffer.from('3+ one') });
    const secrets = new MountedSecrets({ 'ipsec-keys': dir });
    assert.equal(text(await secrets.get('ipsec-keys')), '3+ one');
    const d = deliveries();
    const w = await secrets.watch('ipsec-keys', d.onChange);
    atomicWrite(dir, { keys: Buffer.from('4+ two') });
    await d.next(1);
    atomicWrite(dir, { keys: Buffer.from('5+ three'), other: Buffer.from('x') });
    await d.next(2);
    rmSync(dir, { recursive: true });
    await d.next(3);
    assert.deepEqual(d.got, ['4+ two', '5+ three', undefined]);
    w.stop();
    atomicWrite(dir, { keys: Buffer.from('6+ after stop') });
    await new Promise((r) => setTimeout(r, 1500)); // past a poll of the unwatched kind: nothing may come
    assert.deepEqual(d.got, ['4+ two', '5+ three', undefined]);
    secrets.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a secret mounted after the watch began is delivered', async () => {
  const root = mkdtempSync(join(tmpdir(), 'veil-mounted-'));
  const dir = join(root, 'later');
  try {
    const secrets = new MountedSecrets({ later: dir });
    const d = deliveries();
    await secrets.watch('later', d.onChange);
    atomicWrite(dir, { keys: Buffer.from('3+ late') });
    await d.next(1);
    assert.deepEqual(d.got, ['3+ late']);
    secrets.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
