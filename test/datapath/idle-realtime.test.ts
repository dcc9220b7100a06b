// datapath.realtime (idle-realtime.ts): the datapath worker thread runs SCHED_FIFO while idle,
// drops to SCHED_OTHER while a flood keeps it busy and rises again once quiet; off, no thread of
// the process ever leaves SCHED_OTHER. Real worker thread, TUN, socket; the policy as /proc shows it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/idle-realtime-scenario.js', import.meta.url));
const namespaces: string[] = [];
after(() => { for (const ns of namespaces) run(['ip', 'netns', 'del', ns]); });

interface Outcome { before: number; refused: string | null; idleFifo: boolean; fifoThreads: number; warmFifo: boolean | null; busyNormal: boolean | null; quietFifo: boolean | null; notNormalSamples: number; status: { counters: { rxPackets: number }; drops?: Record<string, number> } }

function scenario(mode: 'on' | 'off'): Outcome {
  const ns = `veil-tir-${mode}-${process.pid}`;
  namespaces.push(ns);
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO, mode], { timeout: 150_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.status === 0 && line.startsWith('{'), `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  return JSON.parse(line) as Outcome;
}

test('datapath.realtime on: the worker is SCHED_FIFO while idle, SCHED_OTHER under a flood, SCHED_FIFO again after it', { timeout: 160_000 }, () => {
  const res = scenario('on');
  assert.equal(res.before, 0, 'every thread SCHED_OTHER before the worker starts');
  assert.equal(res.refused, null, 'the test runs as root: SCHED_FIFO is allowed');
  assert.ok(res.idleFifo, `one thread, the worker, SCHED_FIFO while idle (${res.fifoThreads} found)`);
  assert.equal(res.fifoThreads, 1);
  assert.ok(res.warmFifo, 'SCHED_FIFO again after the warm-up flood');
  assert.ok(res.busyNormal, `the worker dropped to SCHED_OTHER under the flood: ${JSON.stringify(res.status)}`);
  assert.ok(res.quietFifo, 'the worker SCHED_FIFO again once the flood stopped');
});

test('datapath.realtime off: no thread leaves SCHED_OTHER, idle or under a flood', { timeout: 160_000 }, () => {
  const res = scenario('off');
  assert.equal(res.refused, null);
  assert.equal(res.idleFifo, false);
  assert.equal(res.fifoThreads, 0);
  assert.equal(res.notNormalSamples, 0, 'no sample saw a thread outside SCHED_OTHER');
  assert.ok((res.status.drops?.['unknownReceiverIndex'] ?? 0) > 0, `the flood reached the worker: ${JSON.stringify(res.status)}`);
});
