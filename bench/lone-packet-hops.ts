// The engines' own cost of a lone packet, without a lab: two ESP engines and two WireGuard engines
// in this process (the real ones, src/datapath/, sans-I/O), each pair joined by stand-in TUN devices
// and UDP sockets that hand packets over in memory (no syscalls: those are the same in both modes).
// A ping is an ICMP echo from A's pod to B's pod and its reply: four engine calls (A fromTunnel, B
// fromNetwork, B fromTunnel, A fromNetwork), each followed by its worker loop's end-of-turn tick()
// when the engine asks for one (nextDeadline() <= now), as worker-loop.ts does. The modes alternate
// ping by ping; `--gap-ms` apart (idle pings: caches cold) or back to back (`--gap-ms 0`), and in
// bursts of `--burst` with `--pause-ms` between them, as --latency's batches (the pattern that sets
// ESP's replay-mark lead, and so how often its refill runs).
// Prints µs per hop (median, p90) per mode and ESP ÷ WireGuard, the ticks' cost, and the bytes each hop's
// engine call allocates (allocatedBytes: the garbage a lone packet leaves); `--out` a JSON.
//
//   node dist/bench/lone-packet-hops.js [--pings 300] [--gap-ms 10] [--warmup 3000] [--burst 50] [--pause-ms 1500] [--thrash-kb 0] [--out f.json]
// Judges by time: under the lock (HELPERS.md), or many repetitions and the ratio only.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import { benchFlags } from './bench-flags.js';
import { EspEngine } from '../src/datapath/esp-engine.js';
import { WireGuardEngine } from '../src/datapath/wireguard-engine.js';
import type { DatapathEngine } from '../src/datapath/engine.js';
import type { EspPeerSpec, WireGuardPeerSpec } from '../src/datapath/messages.js';
import type { PacketBatch } from '../src/datapath/packet-batch.js';
import type { TunDevice } from '../src/datapath/tun-device.js';
import type { UdpSocket } from '../src/datapath/udp-socket.js';
import { generatePrivateKey } from '../src/crypto/x25519.js';
import { AEAD_GCM, packedSa, packTransforms } from '../src/esp/esp-transform.js';
import { percentile as sortedPercentile } from './measure.js';
import { sleep } from './proc.js';
import { internetChecksum, writeIpv4HeaderChecksum } from '../src/net/ip-packet.js';

const percentile = (xs: number[], p: number): number => sortedPercentile([...xs].sort((x, y) => x - y), p);

const A_IP = '10.9.0.1', B_IP = '10.9.0.2', A_POD = '10.98.0.5', B_POD = '10.99.0.7';
const HOPS = ['aOut', 'bIn', 'bOut', 'aIn'] as const;
type Hop = (typeof HOPS)[number];

interface Datagram { data: Uint8Array; from: Uint8Array; port: number }

/** One node's stand-ins: what its engine reads from the TUN device and the socket, what it wrote to them. */
class Wire {
  readonly tunIn: Uint8Array[] = [];
  readonly tunOut: Uint8Array[] = [];
  readonly udpIn: Datagram[] = [];
  peer!: Wire;

  constructor(readonly addr: Uint8Array, readonly port: number) {}

  tun(): TunDevice {
    return {
      readBatch: (b: PacketBatch): number => fill(b, this.tunIn.splice(0).map((data) => ({ data, from: this.addr, port: 0 }))),
      writeBatch: (b: PacketBatch, n: number): number => {
        for (let i = 0; i < n; i++) if (b.lens[i]! > 0) this.tunOut.push(b.buf.slice(b.offs[i]!, b.offs[i]! + b.lens[i]!));
        return n;
      },
      counters: () => ({}),
    } as unknown as TunDevice;
  }

  udp(): UdpSocket {
    const send = (data: Uint8Array): void => { this.peer.udpIn.push({ data, from: this.addr, port: this.port }); };
    return {
      describe: () => ({}), gro: false, port: this.port, counters: () => ({}),
      recvBatch: (b: PacketBatch): number => fill(b, this.udpIn.splice(0)),
      sendBatch: (b: PacketBatch, n: number): number => {
        for (let i = 0; i < n; i++) if (b.lens[i]! > 0) send(b.buf.slice(b.offs[i]!, b.offs[i]! + b.lens[i]!));
        return n;
      },
      sendTo: (data: Uint8Array, _addr: Uint8Array, _port: number, off = 0, len = data.length - off): boolean => { send(data.slice(off, off + len)); return true; },
    } as unknown as UdpSocket;
  }
}

/** Puts the packets in the batch as a read would (one per slot). */
function fill(b: PacketBatch, ps: Datagram[]): number {
  ps.forEach((p, i) => {
    const off = b.slotOffset(i);
    b.buf.set(p.data, off);
    b.set(i, off, p.data.length);
    b.setPeer(i, p.from, 4, p.port);
  });
  b.count = ps.length;
  return ps.length;
}

function ipBytes(ip: string): Uint8Array {
  return Uint8Array.from(ip.split('.').map(Number));
}

/** An IPv4 ICMP echo request (type 8) or reply (0) of 56 bytes of data, as ping sends. */
function icmp(src: string, dst: string, type: 0 | 8, seq: number): Uint8Array {
  const p = new Uint8Array(20 + 8 + 56), v = new DataView(p.buffer);
  p[0] = 0x45; v.setUint16(2, p.length); v.setUint16(4, seq & 0xffff); p[8] = 64; p[9] = 1;
  p.set(ipBytes(src), 12); p.set(ipBytes(dst), 16); writeIpv4HeaderChecksum(p, 0);
  p[20] = type; v.setUint16(24, 0x1234); v.setUint16(26, seq & 0xffff);
  v.setUint16(22, internetChecksum(p, 20, p.length - 20));
  return p;
}

interface Pair { name: 'esp' | 'wireguard'; a: DatapathEngine<never>; b: DatapathEngine<never>; wa: Wire; wb: Wire; close(): void }

function wires(): [Wire, Wire] {
  const wa = new Wire(ipBytes(A_IP), 4500), wb = new Wire(ipBytes(B_IP), 4500);
  wa.peer = wb; wb.peer = wa;
  return [wa, wb];
}

function espPair(prefix: string): Pair {
  const [wa, wb] = wires();
  const ab = packTransforms([0, 1].map(() => ({ kind: 'aead' as const, name: AEAD_GCM, key: new Uint8Array(randomBytes(16)), salt: new Uint8Array(randomBytes(4)), icvLength: 16 as const })));
  const spec = (ip: string, pod: string, out: number, inn: number): EspPeerSpec => ({
    name: ip, ip, allowedIPs: [`${pod}/24`], outbound: [packedSa(0x100 + out, ab[out]!)], activeSpi: 0x100 + out, inbound: [packedSa(0x100 + inn, ab[inn]!)],
  });
  const a = new EspEngine({ localIp: A_IP, mtu: 1400, marksFile: `${prefix}a.json`, marks: {} }, wa.tun(), wa.udp());
  const b = new EspEngine({ localIp: B_IP, mtu: 1400, marksFile: `${prefix}b.json`, marks: {} }, wb.tun(), wb.udp());
  a.control({ type: 'setPeers', peers: [spec(B_IP, '10.99.0.0', 0, 1)] });
  b.control({ type: 'setPeers', peers: [spec(A_IP, '10.98.0.0', 1, 0)] });
  return { name: 'esp', a: a as unknown as DatapathEngine<never>, b: b as unknown as DatapathEngine<never>, wa, wb, close: () => { a.close(); b.close(); } };
}

function wireguardPair(): Pair {
  const [wa, wb] = wires();
  const ka = generatePrivateKey(), kb = generatePrivateKey();
  const spec = (pub: Uint8Array, ip: string, pod: string): WireGuardPeerSpec => ({
    publicKey: Buffer.from(pub).toString('base64'), endpoint: { address: ip, port: 4500 }, allowedIPs: [`${pod}/24`], persistentKeepalive: 0,
  });
  const a = new WireGuardEngine({ privateKey: ka.raw, mtu: 1400, wallClockOffsetMs: Date.now() - performance.now() }, wa.tun(), wa.udp());
  const b = new WireGuardEngine({ privateKey: kb.raw, mtu: 1400, wallClockOffsetMs: Date.now() - performance.now() }, wb.tun(), wb.udp());
  a.control({ type: 'setPeers', peers: [spec(kb.publicKey, B_IP, '10.99.0.0')] });
  b.control({ type: 'setPeers', peers: [spec(ka.publicKey, A_IP, '10.98.0.0')] });
  return { name: 'wireguard', a: a as unknown as DatapathEngine<never>, b: b as unknown as DatapathEngine<never>, wa, wb, close: () => { a.close(); b.close(); } };
}

/** The worker loop's end of a turn: tick() when the engine asks (worker-loop.ts). Answers its µs (0: none). */
function endTurn(e: DatapathEngine<never>): number {
  const now = performance.now();
  if (e.nextDeadline() > now) return 0;
  e.tick(now);
  return (performance.now() - now) * 1000;
}

interface PingTimes { hops: Record<Hop, number>; ticks: number; tickUs: number }

/** What a hop's figure is: µs by the clock, or bytes by V8's used heap (what the call allocated: garbage for the young generation). */
interface Meter { read(): number; scale: number }
const CLOCK: Meter = { read: () => performance.now(), scale: 1000 };
const HEAP: Meter = { read: () => getHeapStatistics().used_heap_size, scale: 1 };

/** One ping and its reply through a pair; each hop's engine call measured (µs, or bytes with HEAP), its tick() apart. */
function ping(p: Pair, seq: number, meter = CLOCK): PingTimes | null {
  const hops = {} as Record<Hop, number>;
  let ticks = 0, tickUs = 0;
  const step = (hop: Hop, e: DatapathEngine<never>, call: 'fromTunnel' | 'fromNetwork'): void => {
    const m0 = meter.read();
    e[call](performance.now());
    hops[hop] = (meter.read() - m0) * meter.scale;
    const t = endTurn(e);
    if (t > 0) { ticks++; tickUs += t; }
  };
  p.wa.tunIn.push(icmp(A_POD, B_POD, 8, seq));
  step('aOut', p.a, 'fromTunnel');
  step('bIn', p.b, 'fromNetwork');
  if (p.wb.tunOut.splice(0).length !== 1) return null;
  p.wb.tunIn.push(icmp(B_POD, A_POD, 0, seq));
  step('bOut', p.b, 'fromTunnel');
  step('aIn', p.a, 'fromNetwork');
  if (p.wa.tunOut.splice(0).length !== 1) return null;
  return { hops, ticks, tickUs };
}

/** Until the pair carries a ping: WireGuard's handshake, ESP's first marks (both engines' calls pumped). */
async function connect(p: Pair): Promise<void> {
  for (let i = 0; i < 200; i++) {
    p.wa.tunIn.push(icmp(A_POD, B_POD, 8, 60000 + i));
    for (let k = 0; k < 6; k++) {
      const now = performance.now();
      p.a.fromTunnel(now); p.b.fromNetwork(now); p.a.fromNetwork(now); p.b.fromTunnel(now);
      endTurn(p.a); endTurn(p.b);
    }
    p.wa.tunOut.length = 0;
    if (p.wb.tunOut.splice(0).length > 0 && ping(p, 60000 + i) !== null) return;
    await sleep(5);
  }
  throw new Error(`the ${p.name} pair carried no ping`);
}

interface ModeSummary { hopsUs: Record<Hop, { p50: number; p90: number; mean: number }>; roundTripUs: { p50: number; p90: number; mean: number }; ticks: number; tickUsMedian: number; tickUsMax: number; lost: number }

function summarize(rows: PingTimes[], lost: number): ModeSummary {
  const q = (xs: number[]) => ({ p50: round(percentile(xs, 50)), p90: round(percentile(xs, 90)) });
  const mean = (xs: number[]) => round(xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length));
  const hopsUs = Object.fromEntries(HOPS.map((h) => { const xs = rows.map((r) => r.hops[h]); return [h, { ...q(xs), mean: mean(xs) }]; })) as ModeSummary['hopsUs'];
  const rt = rows.map((r) => HOPS.reduce((s, h) => s + r.hops[h], 0));
  const ticks = rows.filter((r) => r.ticks > 0).map((r) => r.tickUs);
  return {
    hopsUs, roundTripUs: { ...q(rt), mean: round(rt.reduce((s, x) => s + x, 0) / Math.max(1, rt.length)) },
    ticks: ticks.length, tickUsMedian: round(ticks.length ? percentile(ticks, 50) : 0), tickUsMax: round(Math.max(0, ...ticks)), lost,
  };
}

const round = (x: number): number => Math.round(x * 100) / 100;

/**
 * Bytes each hop's engine call allocates (median over 400 pings a mode, alternated, back to back),
 * less what reading the heap allocates itself: the garbage a lone packet leaves for V8's young
 * generation, whose collections run on its helper threads. A collection inside a call reads low or
 * negative, and the median passes over it.
 */
function allocatedBytes(pairs: Pair[], seq: number): Record<Pair['name'], Record<Hop | 'ping', number>> {
  const own: number[] = [];
  for (let i = 0; i < 400; i++) { const m0 = HEAP.read(); own.push(HEAP.read() - m0); }
  const base = percentile(own, 50);
  const rows: PingTimes[][] = pairs.map(() => []);
  for (let i = 0; i < 400; i++) for (const m of i % 2 ? [1, 0] : [0, 1]) { const r = ping(pairs[m]!, seq + i, HEAP); if (r) rows[m]!.push(r); }
  return Object.fromEntries(pairs.map((p, m) => {
    const hops = HOPS.map((h) => Math.max(0, percentile(rows[m]!.map((r) => r.hops[h]), 50) - base));
    return [p.name, { ...Object.fromEntries(HOPS.map((h, k) => [h, hops[k]!])), ping: hops.reduce((a, b) => a + b, 0) }];
  })) as Record<Pair['name'], Record<Hop | 'ping', number>>;
}

async function main(): Promise<void> {
  const values = benchFlags({
    pings: { type: 'string', default: '300' }, 'gap-ms': { type: 'string', default: '10' }, warmup: { type: 'string', default: '3000' }, burst: { type: 'string', default: '50' },
    'pause-ms': { type: 'string', default: '1500' }, 'thrash-kb': { type: 'string', default: '0' }, out: { type: 'string' },
  }, 'Usage: node dist/bench/lone-packet-hops.js [--pings 300] [--gap-ms 10] [--warmup 3000] [--burst 50] [--pause-ms 1500] [--thrash-kb 0] [--out FILE]');
  const pings = Number(values.pings), gapMs = Number(values['gap-ms']), warmup = Number(values.warmup);
  const burst = Number(values.burst), pauseMs = Number(values['pause-ms']);
  // --thrash-kb: before each ping, writes a line of every 64 B of that many KB: the caches as the
  // lab's ping finds them (other processes ran, every syscall flushed the TLB), not warm from the last.
  const thrash = new Uint8Array(Number(values['thrash-kb']) * 1024);
  if (!(pings > 0 && gapMs >= 0 && warmup >= 0 && burst > 0 && pauseMs >= 0)) throw new Error('--pings > 0, --gap-ms >= 0, --warmup >= 0, --burst > 0, --pause-ms >= 0');
  const dir = mkdtempSync(join(tmpdir(), 'veil-hops-'));
  let pairs: Pair[] = [];
  try {
    // Warm-up back to back: the engines' code compiled (TurboFan), as in an agent that has carried
    // traffic. Then fresh pairs (the compiled code stays): a warmed-up ESP SA's replay-mark lead is
    // sized to that rate and would outlast the run, where the lab's batches keep it at 8-36 packets.
    pairs = [espPair(join(dir, 'w-')), wireguardPair()];
    for (const p of pairs) await connect(p);
    for (let i = 0; i < warmup; i++) for (const p of pairs) ping(p, i);
    for (const p of pairs) p.close();
    pairs = [espPair(join(dir, 'm-')), wireguardPair()];
    for (const p of pairs) await connect(p);
    const rows: PingTimes[][] = pairs.map(() => []), lost = pairs.map(() => 0);
    for (let i = 0; i < pings; i++) {
      if (i > 0 && i % burst === 0 && gapMs > 0) await sleep(pauseMs); // --latency's batches: the other labs' turns between them
      const order = i % 2 ? [1, 0] : [0, 1];
      for (const m of order) {
        if (gapMs > 0) await sleep(gapMs);
        for (let k = 0; k < thrash.length; k += 64) thrash[k]!++;
        const r = ping(pairs[m]!, warmup + i);
        if (r) rows[m]!.push(r); else lost[m]!++;
      }
    }
    const [esp, wg] = pairs.map((_, m) => summarize(rows[m]!, lost[m]!)) as [ModeSummary, ModeSummary];
    const allocated = allocatedBytes(pairs, warmup + pings);
    const ratio = (x: number, y: number) => round(x / y);
    const result = {
      pings, gapMs, warmup, burst, pauseMs, thrashKb: thrash.length / 1024, loadavg: loadavg()[0], esp, wireguard: wg, allocatedBytes: allocated,
      espOverWireguard: {
        roundTripP50: ratio(esp.roundTripUs.p50, wg.roundTripUs.p50), roundTripP90: ratio(esp.roundTripUs.p90, wg.roundTripUs.p90), roundTripMean: ratio(esp.roundTripUs.mean, wg.roundTripUs.mean),
        ...Object.fromEntries(HOPS.map((h) => [`${h}P50`, ratio(esp.hopsUs[h].p50, wg.hopsUs[h].p50)])),
      },
    };
    console.log(JSON.stringify(result));
    if (values.out) writeFileSync(values.out, JSON.stringify(result, null, 2) + '\n');
  } finally {
    for (const p of pairs) p.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
