// The cold-ping measure's reading of /proc: this process's own mappings with their referenced
// kB, and the kinds the bench sums them by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mappingKind, readSmaps } from '../../bench/cold-ping.js';

// What clear_refs then does to those counts is read by the bench itself (its control ping and the
// per-mapping figures in the JSON), not asserted here: on this VM a page still in a CPU's TLB may
// not be marked again after a clear, and V8's own threads may touch a merged mapping meanwhile.
test('readSmaps: the mappings of this process, a freshly written buffer referenced, node mapped; a process that is gone: none', () => {
  const big = () => readSmaps(process.pid).filter((m) => m.end - m.start >= 64 << 20 && !m.path && m.perms.startsWith('rw'));
  const buf = Buffer.alloc(64 << 20, 1); // its own mapping (above malloc's mmap threshold), every page written
  assert.ok(big().some((m) => m.referencedKB >= 60 << 10), `freshly written: ${big().map((m) => m.referencedKB).join(', ')} kB referenced`);
  assert.ok(buf[0] === 1 && readSmaps(process.pid).some((m) => m.path === process.execPath || m.path.endsWith('/node')), 'node itself is mapped');
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
