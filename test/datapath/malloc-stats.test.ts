// The malloc arenas as the agent's /memory reports them (native/malloc-stats.c, src/native/malloc-stats.ts):
// glibc's own report parsed arena by arena, and live bytes that follow real native allocations. An
// AES-GCM key's native context is such an allocation (~1.3 KB): the reason the ESP engine keeps one
// only for an SA that carries traffic (esp-engine.ts AEAD_HOT_MS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mallocStats, parseMallocInfo } from '../../src/native/malloc-stats.js';
import { AeadKey } from '../../src/datapath/aead-batch.js';

const REPORT = `<malloc version="1">
<heap nr="0">
<sizes>
  <size from="17" to="32" total="64" count="2"/>
</sizes>
<total type="fast" count="2" size="64"/>
<total type="rest" count="4" size="263427"/>
<system type="current" size="2916352"/>
<system type="max" size="2916352"/>
<aspace type="total" size="2916352"/>
<aspace type="mprotect" size="2916352"/>
</heap>
<heap nr="1">
<sizes>
</sizes>
<total type="fast" count="0" size="0"/>
<total type="rest" count="1" size="131616"/>
<system type="current" size="135168"/>
<system type="max" size="135168"/>
<aspace type="total" size="135168"/>
<aspace type="mprotect" size="135168"/>
<aspace type="subheaps" size="1"/>
</heap>
<total type="fast" count="2" size="64"/>
<total type="rest" count="5" size="395043"/>
<total type="mmap" count="1" size="135168"/>
<system type="current" size="3051520"/>
</malloc>
`;

test('malloc_info is read arena by arena: size, free bytes (fast and rest), and the mmapped blocks', () => {
  assert.deepEqual(parseMallocInfo(REPORT), {
    arenas: [{ nr: 0, systemBytes: 2916352, freeBytes: 263491 }, { nr: 1, systemBytes: 135168, freeBytes: 131616 }],
    mmappedBytes: 135168,
  });
});

test('live malloc bytes follow native allocations: 2,000 AES-GCM contexts hold ~1.3 KB each until freed', () => {
  const live = () => mallocStats().arenas.reduce((t, a) => t + a.systemBytes - a.freeBytes, 0);
  const raw = Array.from({ length: 2000 }, () => randomBytes(16));
  const before = live();
  assert.ok(before > 0 && mallocStats().arenas.some((a) => a.nr === 0), 'the main arena is listed');
  const keys = raw.map((k) => AeadKey.create('aes-128-gcm', k, 16, 'seal'));
  const held = (live() - before) / keys.length;
  for (const k of keys) k.free();
  const after = (live() - before) / keys.length;
  assert.ok(held > 800 && held < 4096, `a context holds ~1.3 KB of malloc: ${held.toFixed(0)} B a key`);
  assert.ok(after < 200, `freed contexts give their bytes back to malloc: ${after.toFixed(0)} B a key left`);
});
