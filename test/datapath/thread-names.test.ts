// The datapath's threads carry names of their own (top -H, /proc's comm, the latency bench's
// per-thread figures): the worker names itself, the addon names the crypto helpers and the marks
// writer it starts. pthreads copy the creator's name, so without this every one of them read as the
// agent's main thread ("veil-agent-<node>") or "node".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { native } from '../../src/native/addon.js';
import { setCryptoThreads } from '../../src/datapath/aead-batch.js';
import { SequenceMarkWriter } from '../../src/esp/sequence-mark-writer.js';
import { waitFor } from '../wait-for.js';

/** This process's thread names, one per thread. */
function threadNames(): string[] {
  const out: string[] = [];
  for (const t of readdirSync('/proc/self/task')) {
    try { out.push(readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim()); } catch { /* ended meanwhile */ }
  }
  return out;
}
const mainName = () => readFileSync(`/proc/self/task/${process.pid}/comm`, 'utf8').trim();

test('a thread names itself, and only itself', async () => {
  const before = mainName();
  const addon = new URL('../../src/native/addon.js', import.meta.url).href;
  const w = new Worker(`import('${addon}').then(({ native }) => { require('node:worker_threads').parentPort.postMessage(native().threadSetName('veil-t-named')); });`, { eval: true });
  try {
    const rc = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    assert.equal(rc, 0);
    assert.equal(threadNames().filter((n) => n === 'veil-t-named').length, 1, `one thread so named: ${threadNames().join(', ')}`);
    assert.equal(mainName(), before, 'the thread that started it keeps its name');
  } finally {
    await w.terminate();
  }
});

test('a name that is none, too long or not a string is refused with what is wrong', () => {
  assert.throws(() => native().threadSetName(''), { name: 'RangeError', message: /1\.\.15 bytes/ });
  assert.throws(() => native().threadSetName('veil-sixteen-chr'), { name: 'RangeError', message: /1\.\.15 bytes/ });
  assert.throws(() => native().threadSetName(7 as unknown as string), { name: 'TypeError', message: /a thread name is a string/ });
  assert.notEqual(mainName(), '', 'nothing renamed');
});

test('the crypto helpers and the marks writer are named by the addon', async () => {
  setCryptoThreads(3);
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-names-'));
  const writer = new SequenceMarkWriter(join(dir, 'marks'), []);
  try {
    await waitFor(() => `the named helpers among ${threadNames().join(', ')}`, () => ['veil-crypto-1', 'veil-crypto-2', 'veil-writer'].every((n) => threadNames().includes(n)), 30_000);
  } finally {
    writer.close();
    setCryptoThreads(1);
    rmSync(dir, { recursive: true, force: true });
  }
});
