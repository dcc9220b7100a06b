// A SendQueue (send-queue.ts: the WireGuard core's own datagrams, the health prober's rounds) over a
// real UDP socket on loopback in a throwaway namespace: datagrams arrive whole and in the order
// queued, a full queue and one too large for it send what is queued first, one refused by the
// kernel is counted failed while the others go, and only tagged datagrams the kernel took are counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';

let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

interface SendQueueResult {
  steps: Record<string, { queued: number; calls: number }>;
  got: string[];
  bytesOk: boolean;
  sentTags: string[];
  failed: number;
}

test('a send queue sends in order, in one sendmmsg a flush, and counts what the kernel took and refused', () => {
  ns = makeNetns('sq');
  const r = runScenario(ns, ['send-queue']) as unknown as SendQueueResult;
  const small = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}:200`);
  assert.deepEqual(r.got, ['1:100', '2:148', '3:32', '4:3000', ...small(5, 13), '14:64'], 'every datagram whole, in the order queued; the refused one never sent');
  assert.ok(r.bytesOk, 'payload bytes intact (only the length given of a longer buffer)');
  assert.deepEqual(r.steps['three small'], { queued: 3, calls: 0 }, 'queued, nothing sent before a flush');
  assert.deepEqual(r.steps['one larger than the queue'], { queued: 0, calls: 1 }, 'what was queued went first, in one sendmmsg, then the large one alone');
  assert.deepEqual(r.steps['nine small'], { queued: 1, calls: 1 }, 'the ninth found the queue full: the first eight went in one sendmmsg');
  assert.deepEqual(r.steps['flush with one refused'], { queued: 0, calls: 1 });
  assert.deepEqual(r.steps['flush when empty'], { queued: 0, calls: 0 }, 'an empty flush makes no call');
  assert.deepEqual(r.sentTags, ['t1', 't3', 't4', ...small(5, 14).map((s) => `t${s.split(':')[0]}`)], 'tagged datagrams the kernel took, each once; untagged ones not counted');
  assert.equal(r.failed, 1, 'the refused datagram counted failed');
});
