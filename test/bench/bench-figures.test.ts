// The bench's derived figures: the UDP rate search (doubling, then bisecting) against a simulated
// path with a known capacity, the slowest-second ratio that flags a stall, and the RTT ratios to
// wireguard-go round by round, and which datapath workers ran realtime during the idle pings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePingReplies, searchUdpRate, slowestSecondRatio, udpShortfallPct } from '../../bench/measure.js';
import { formatRealtimeWorkers, formatRoundRatios, roundRatiosToWireGuardGo, stalls } from '../../bench/report.js';
import { realtimeThreads, runQueueWaitSeconds } from '../../bench/proc.js';
import { readFileSync } from 'node:fs';
import { native } from '../../src/native/addon.js';
import type { ModeFigures } from '../../bench/measure.js';

/** A path that carries up to `capacity` Mbit/s and loses what is offered beyond it. */
function path(capacity: number) {
  const offered: number[] = [];
  const trial = async (mbps: number) => { offered.push(mbps); return mbps <= capacity ? 0.1 : (100 * (mbps - capacity)) / mbps; };
  return { offered, trial };
}

test('UDP search: doubles until a rate loses >= 1 %, then bisects between the last good and the first bad rate', async () => {
  const p = path(1000);
  const best = await searchUdpRate(p.trial);
  assert.deepEqual(p.offered, [200, 400, 800, 1600, 1200, 1000, 1100]);
  assert.equal(best, 1000);
  const slow = path(150);
  assert.equal(await searchUdpRate(slow.trial), 150, 'below the start rate the bisection goes down from it');
  const fast = path(1e9);
  assert.equal(await searchUdpRate(fast.trial, 200, 1600), 1600, 'never lossy: the cap');
  assert.equal(await searchUdpRate(async () => 50), null, 'loses everything: no rate');
});

test('UDP search: a rate the sender cannot make counts as short by what never arrived', async () => {
  assert.equal(udpShortfallPct(400, 399, 0.5), 0.5, 'sent what was offered: the loss');
  assert.ok(Math.abs(udpShortfallPct(3200, 1700, 0) - 46.875) < 1e-9, 'one sender makes 1,700 of 3,200 without loss');
  // a lossless path behind a sender that makes at most 1,700 Mbit/s: the search ends below 1,700
  const offered: number[] = [];
  const best = await searchUdpRate(async (mbps) => { offered.push(mbps); return udpShortfallPct(mbps, Math.min(mbps, 1700), 0); });
  assert.deepEqual(offered, [200, 400, 800, 1600, 3200, 2400, 2000, 1800]);
  assert.equal(best, 1600);
});

test('slowest second ÷ median second, and the rounds whose tests stalled', () => {
  assert.equal(slowestSecondRatio([2, 2, 2, 2]), 1);
  assert.equal(slowestSecondRatio([2, 0.4, 2, 2]), 0.2);
  assert.ok(Number.isNaN(slowestSecondRatio([])));
  const f = (tcpSeconds: Record<string, number[]>) => ({ tcpSeconds }) as unknown as ModeFigures;
  const found = stalls([{ 'veil-wireguard': f({ tcp1: [1.2, 1.3, 1.2] }) }, { 'veil-wireguard': f({ tcp1: [1.2, 0.48, 1.2], tcp4: [2, 2, 2] }) }]);
  assert.deepEqual(found, [{ round: 2, mode: 'veil-wireguard', test: 'tcp1', seconds: [1.2, 0.48, 1.2] }]);
});

test('RTT ÷ wireguard-go per round, and the median of those ratios (a failed round counts as none)', () => {
  const f = (rttP50Us: number, rttP99Us: number) => ({ rttP50Us, rttP99Us }) as unknown as ModeFigures;
  const r = roundRatiosToWireGuardGo([
    { 'wireguard-go': f(500, 2000), 'veil-wireguard': f(400, 1000), 'veil-ipsec': f(450, 4000) },
    { 'wireguard-go': f(400, 1000), 'veil-wireguard': f(400, 3000) },
    { 'wireguard-go': f(600, 1000), 'veil-wireguard': f(300, NaN), 'veil-ipsec': f(300, 500) },
  ]);
  assert.deepEqual(r['veil-wireguard'], { rttP50Us: { rounds: [0.8, 1, 0.5], median: 0.8 }, rttP99Us: { rounds: [0.5, 3, null], median: 1.75 } });
  assert.deepEqual(r['veil-ipsec'], { rttP50Us: { rounds: [0.9, null, 0.5], median: 0.7 }, rttP99Us: { rounds: [2, null, 0.5], median: 1.25 } });
  assert.equal(r['wireguard-go'], undefined);
  assert.deepEqual(formatRoundRatios({ 'veil-ipsec': r['veil-ipsec']! }), [
    'veil-ipsec rttP50Us ÷ wg-go per round 0.90 – 0.50 (median 0.70)',
    'veil-ipsec rttP99Us ÷ wg-go per round 2.00 – 0.50 (median 1.25)',
  ]);
  assert.deepEqual(roundRatiosToWireGuardGo([{ 'veil-wireguard': f(400, 1000) }]), {}, 'no wireguard-go: no ratios');
});

test('realtime workers at the idle pings: per veil mode and round, the processes with a SCHED_FIFO thread at the start and the end', () => {
  const f = (start: number[], end: number[]) => ({ rttRealtimeThreads: { start, end } }) as unknown as ModeFigures;
  assert.deepEqual(formatRealtimeWorkers([
    { 'wireguard-go': f([0, 0], [0, 0]), 'veil-wireguard': f([1, 1], [1, 1]), 'veil-ipsec': f([0, 1], [1, 1]) },
    { 'wireguard-go': f([0, 0], [0, 0]), 'veil-wireguard': f([1, 0], [0, 0]) },
  ]), [
    "veil-wireguard workers SCHED_FIFO at the idle pings' start→end per round 2/2→2/2 1/2→0/2",
    "veil-ipsec workers SCHED_FIFO at the idle pings' start→end per round 1/2→2/2 –",
  ]);
});

test('realtimeThreads reads each thread\'s policy from /proc: SCHED_FIFO counts, SCHED_OTHER does not', (t) => {
  const before = realtimeThreads(process.pid);
  if (native().threadSetRealtime(1) !== 0) { t.skip('no CAP_SYS_NICE here'); return; }
  try {
    assert.equal(realtimeThreads(process.pid), before + 1);
  } finally {
    assert.equal(native().threadSetRealtime(0), 0);
  }
  assert.equal(realtimeThreads(process.pid), before);
  assert.equal(realtimeThreads(2 ** 22 + 1), 0, 'no such process');
});

test('ping replies: each request keeps its place in the batch, a lost one is null, a duplicate counts once', () => {
  const out = ['PING 10.245.1.2 (10.245.1.2) 56(84) bytes of data.',
    '64 bytes from 10.245.1.2: icmp_seq=1 ttl=62 time=0.912 ms',
    '64 bytes from 10.245.1.2: icmp_seq=3 ttl=62 time=4.31 ms',
    '64 bytes from 10.245.1.2: icmp_seq=3 ttl=62 time=9.99 ms (DUP!)',
    '64 bytes from 10.245.1.2: icmp_seq=4 ttl=62 time=0.6 ms',
    '', '--- 10.245.1.2 ping statistics ---', '4 packets transmitted, 3 received, 25% packet loss, time 31ms',
    'rtt min/avg/max/mdev = 0.600/1.940/4.310/1.681 ms'].join('\n');
  assert.deepEqual(parsePingReplies(out, 4).map((x) => x === null ? null : Math.round(x)), [912, null, 4310, 600]);
  assert.deepEqual(parsePingReplies(out, 2).map((x) => x === null ? null : Math.round(x)), [912, null], 'a reply beyond the count asked for is ignored');
});

test('runQueueWaitSeconds sums every thread\'s run-queue wait from /proc: at least the main thread\'s, never falling; 0 for no process', () => {
  const mainThread = Number(readFileSync(`/proc/${process.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  const first = runQueueWaitSeconds(process.pid);
  assert.ok(first >= mainThread, `all threads ${first} s, the main thread alone ${mainThread} s`);
  assert.ok(runQueueWaitSeconds(process.pid) >= first);
  assert.equal(runQueueWaitSeconds(2 ** 22 + 1), 0, 'no such process');
});
