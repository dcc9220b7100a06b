// The cold-ping measure's reading of /proc: this process's own mappings with their referenced
// kB, which clear_refs empties and a touch refills, and the kinds the bench sums them by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mappingKind, readSmaps } from '../../bench/cold-ping.js';

test('readSmaps: clear_refs empties the referenced kB of a buffer; pages first touched after it are referenced', () => {
  const big = () => readSmaps(process.pid).filter((m) => m.end - m.start >= 64 << 20 && !m.path && m.perms.startsWith('rw'));
  const old = Buffer.alloc(64 << 20, 1); // its own mapping (above malloc's mmap threshold)
  assert.ok(big().some((m) => m.referencedKB >= 60 << 10), 'freshly written: referenced');
  writeFileSync(`/proc/${process.pid}/clear_refs`, '1');
  assert.ok(big().every((m) => m.referencedKB < 1024), `cleared: ${big().map((m) => m.referencedKB).join(', ')} kB referenced`);
  // A page touched again may still sit in this CPU's TLB and not be marked (seen on this VM), so
  // the touched pages are new ones: a fresh mapping, 16 of its pages faulted in.
  const fresh = Buffer.allocUnsafeSlow(64 << 20);
  for (let i = 0; i < 16; i++) fresh[i * 4096 * 4] = 2;
  const kbs = big().map((m) => m.referencedKB);
  assert.ok(kbs.some((kb) => kb >= 64 && kb < 1024), `16 pages of a fresh mapping: ${kbs.join(', ')} kB referenced`);
  assert.ok(old[0] === 1 && readSmaps(process.pid).some((m) => m.path === process.execPath || m.path.endsWith('/node')), 'node itself is mapped');
  assert.deepEqual(readSmaps(-1), [], 'a process that is gone: none');
});

test('mappingKind: text on large pages, V8 heap pages, JIT code, libraries, stacks by thread', () => {
  const m = (perms: string, size: number, path = '', anonHugeKB = 0) => ({ start: 0x10000000, end: 0x10000000 + size, perms, path, referencedKB: 4, anonHugeKB });
  assert.equal(mappingKind(m('r-xp', 24 << 20, '', 24 << 10), []), 'text on 2 MiB pages');
  assert.equal(mappingKind(m('rw-p', 256 << 10), []), 'anon 256 KiB (V8 heap page)');
  assert.equal(mappingKind(m('rwxp', 240 << 10), []), 'anon exec (JIT code)');
  assert.equal(mappingKind(m('r-xp', 1 << 20, '/usr/lib/x86_64-linux-gnu/libc.so.6'), []), 'libc');
  assert.equal(mappingKind(m('r-xp', 1 << 20, '/usr/bin/node'), []), 'binary text');
  assert.equal(mappingKind(m('r-xp', 100 << 10, '/x/build/Release/veil_datapath.node'), []), 'addon');
  assert.equal(mappingKind(m('rw-p', 8 << 20), [{ sp: 0x10000100, name: 'worker' }]), 'stack worker');
  assert.equal(mappingKind(m('rw-p', 3 << 20), []), 'anon other');
});
