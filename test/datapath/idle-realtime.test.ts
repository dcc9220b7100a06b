// datapath.realtime (idle-realtime.ts): the datapath worker thread runs SCHED_FIFO while idle,
// drops to SCHED_OTHER while a flood keeps it busy and rises again once quiet; off, no thread of
// the process ever leaves SCHED_OTHER. Real worker thread, TUN, socket; the policy as /proc shows it.
// The rules themselves (busy share, wake-ups, long stretches, control work set aside) on a
// made-up clock, with the switches recorded instead of made.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';
import { BUSY_WAKEUPS, IdleRealtime, QUIET_MS, WINDOW_MS } from '../../src/datapath/idle-realtime.js';

/** A policy on a made-up clock: each wake-up works `work` ms, then waits until the next one. */
function clocked(opts: { refuseRise?: boolean } = {}) {
  const switches: boolean[] = [];
  let now = 1_000;
  const policy = new IdleRealtime(true, now, true, (rt) => { switches.push(rt); return !(rt && opts.refuseRise); });
  const wake = (work: number, gap: number) => {
    policy.afterWait(now);
    now += work;
    policy.beforeWait(now);
    now += gap;
  };
  /** wakes per window, each `work` ms, for `ms` ms. */
  const traffic = (ms: number, wakes: number, work: number) => {
    for (let t = 0; t < ms; t += WINDOW_MS) for (let i = 0; i < wakes; i++) wake(work, WINDOW_MS / wakes - work);
  };
  return { policy, switches, wake, traffic, at: () => now, advance: (ms: number) => { now += ms; } };
}

test('the policy: lone packets keep it SCHED_FIFO; a quarter busy drops it; a quiet spell raises it again', () => {
  const c = clocked();
  c.traffic(2_000, 1, 0.05); // a ping every 10 ms
  assert.deepEqual(c.switches, []);
  assert.equal(c.policy.isRealtime, true);
  c.traffic(100, 2, 1.5); // 30 % of each window
  assert.deepEqual(c.switches, [false]);
  c.traffic(QUIET_MS / 2, 1, 0.05);
  assert.equal(c.policy.isRealtime, false, 'not before a quiet spell');
  c.traffic(QUIET_MS, 1, 0.05);
  assert.deepEqual(c.switches, [false, true]);
  assert.equal(c.policy.isRealtime, true);
});

test('the policy: many cheap wake-ups (a flow of small packets, an ACK stream) drop it though it is far from a quarter busy', () => {
  const few = clocked();
  few.traffic(1_000, BUSY_WAKEUPS / 2, 0.02);
  assert.deepEqual(few.switches, [], 'half the wake-up limit: stays SCHED_FIFO');
  const many = clocked();
  many.traffic(100, BUSY_WAKEUPS * 2, 0.02); // 8 % busy
  assert.deepEqual(many.switches, [false]);
  many.traffic(200, BUSY_WAKEUPS * 2, 0.02);
  assert.deepEqual(many.switches, [false], 'stays SCHED_OTHER while the flow lasts');
});

test('the policy: one long stretch of packet work drops it at once', () => {
  const c = clocked();
  c.wake(0.05, 50);
  c.wake(3, 1);
  assert.deepEqual(c.switches, [false]);
});

test('the policy: control work runs SCHED_OTHER, does not count as load, and it is SCHED_FIFO again at the next wait', () => {
  const c = clocked();
  c.traffic(100, 1, 0.05);
  c.policy.afterWait(c.at());
  c.advance(0.05); // a packet
  c.policy.setAside(c.at());
  assert.deepEqual(c.switches, [false], 'SCHED_OTHER before the control work');
  c.policy.setAside(c.at()); // a second request in the same turn: no second switch
  c.advance(150); // a compaction's pause
  c.policy.beforeWait(c.at());
  assert.deepEqual(c.switches, [false, true], 'SCHED_FIFO again right after it, no quiet spell needed');
  assert.equal(c.policy.isRealtime, true);
  c.traffic(100, 1, 0.05);
  assert.deepEqual(c.switches, [false, true], 'the 150 ms were not load');
  // While busy with packets, control work switches nothing (it is SCHED_OTHER already).
  c.traffic(50, 2, 2);
  const n = c.switches.length;
  c.policy.afterWait(c.at());
  c.policy.setAside(c.at());
  c.policy.beforeWait(c.at() + 5);
  assert.equal(c.switches.length, n);
});

test('the policy: a refused rise leaves it SCHED_OTHER and is tried again only after another quiet spell', () => {
  const c = clocked({ refuseRise: true });
  c.traffic(50, 2, 2);
  c.traffic(QUIET_MS + 20, 1, 0.05);
  assert.deepEqual(c.switches, [false, true]);
  assert.equal(c.policy.isRealtime, false);
  c.traffic(QUIET_MS - 50, 1, 0.05);
  assert.deepEqual(c.switches, [false, true]);
  c.traffic(100, 1, 0.05);
  assert.deepEqual(c.switches, [false, true, true]);
});

test('the policy, off: never switches', () => {
  const switches: boolean[] = [];
  const p = new IdleRealtime(false, 0, true, (rt) => { switches.push(rt); return true; });
  for (let t = 0; t < 1_000; t += 1) { p.afterWait(t); p.setAside(t + 0.5); p.beforeWait(t + 0.9); }
  assert.deepEqual(switches, []);
  assert.equal(p.isRealtime, false);
});

const SCENARIO = fileURLToPath(new URL('./fixtures/idle-realtime-scenario.js', import.meta.url));
const namespaces: string[] = [];
after(() => { for (const ns of namespaces) run(['ip', 'netns', 'del', ns]); });

interface Outcome { before: number; refused: string | null; priorityRefused: string | null; idleFifo: boolean; fifoThreads: number; workerName: string | null; idlePinned: boolean | null; pinnedThreads: number; busyAllCpus: boolean | null; warmFifo: boolean | null; busyNormal: boolean | null; quietFifo: boolean | null; fifoAfterControl: boolean | null; notNormalSamples: number; status: { counters: { rxPackets: number }; drops?: Record<string, number> } }

function scenario(mode: 'on' | 'off' | 'refused'): Outcome {
  const ns = `veil-tir-${mode}-${process.pid}`;
  namespaces.push(ns);
  mustRun(['ip', 'netns', 'add', ns]);
  // refused: root without CAP_SYS_NICE (out of the bounding set, so the exec'd node lacks it)
  const drop = mode === 'refused' ? ['setpriv', '--bounding-set', '-sys_nice'] : [];
  const r = run(['ip', 'netns', 'exec', ns, ...drop, process.execPath, SCENARIO, mode], { timeout: 150_000 });
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
  assert.equal(res.workerName, 'veil-datapath', 'the realtime thread is the datapath worker, by its name');
  assert.ok(res.idlePinned, 'the realtime worker on the first CPU the process may use');
  assert.equal(res.pinnedThreads, 1, 'no other thread moved');
  assert.ok(res.busyAllCpus, 'on every CPU again once it dropped to SCHED_OTHER');
  assert.ok(res.warmFifo, 'SCHED_FIFO again after the warm-up flood');
  assert.ok(res.busyNormal, `the worker dropped to SCHED_OTHER under the flood: ${JSON.stringify(res.status)}`);
  assert.ok(res.quietFifo, 'the worker SCHED_FIFO again once the flood stopped');
  assert.ok(res.fifoAfterControl, 'SCHED_FIFO again after control requests (they run SCHED_OTHER)');
});

test('datapath.realtime off: no thread leaves SCHED_OTHER, idle or under a flood', { timeout: 160_000 }, () => {
  const res = scenario('off');
  assert.equal(res.refused, null);
  assert.equal(res.idleFifo, false);
  assert.equal(res.fifoThreads, 0);
  assert.equal(res.pinnedThreads, 0, 'no thread pinned to a CPU');
  assert.equal(res.notNormalSamples, 0, 'no sample saw a thread outside SCHED_OTHER');
  assert.ok((res.status.drops?.['unknownReceiverIndex'] ?? 0) > 0, `the flood reached the worker: ${JSON.stringify(res.status)}`);
});

test('datapath.realtime on without CAP_SYS_NICE: the worker is refused (and reports it), stays SCHED_OTHER and moves packets', { timeout: 160_000 }, () => {
  const res = scenario('refused');
  assert.equal(res.refused, 'EPERM');
  assert.equal(res.priorityRefused, 'EACCES', 'nice -10 is refused too (setpriority says EACCES): the agent warns once for both');
  assert.equal(res.fifoThreads, 0);
  assert.equal(res.pinnedThreads, 0, 'no thread pinned to a CPU');
  assert.equal(res.notNormalSamples, 0, 'no sample saw a thread outside SCHED_OTHER');
  assert.ok((res.status.drops?.['unknownReceiverIndex'] ?? 0) > 0, `the flood reached the worker: ${JSON.stringify(res.status)}`);
});
