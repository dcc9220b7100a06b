// Handshake cost on one core, sans-I/O: `node dist/bench/wireguard-handshake.js [N] [rounds] [warmup]`.
// N initiator Devices, each a distinct peer of one responder Device, run complete handshakes
// (initiation -> response -> consumed response, fresh ephemerals every time, macs included) in
// `warmup` rounds that are not counted (default 3), then `rounds` rounds; each figure is the median
// over the counted rounds. The warm-up rounds carry V8's one-off TurboFan compilation of the
// handshake code (functions called once a handshake reach their budget in rounds 1-2; ~130 ms in
// all here), which a node pays once per process, not per handshake: counting them made the figure
// the cost of a round that still compiled. Their own rate is printed too
// (warmupFullHandshakesPerCpuSecond). Prints:
//  - createInitiationUs, responderUs (consume initiation + create response), consumeResponseUs;
//  - responderPerSecond: initiations one core can answer (a node's handshake capacity);
//  - fullHandshakesPerSecond: complete handshakes when one core does both sides' work;
//  - fullHandshakeCpuUs and fullHandshakesPerCpuSecond: the same by the process's CPU time
//    (process.cpuUsage, GC threads included) instead of the wall clock: on a shared machine a
//    descheduled thread stretches wall time, not CPU time, so this one is the steadier figure;
//  - x25519Us, x25519PairUs, ephemeralKeyUs and dhBoundFullPerSecond: one X25519 shared secret
//    (a Montgomery ladder), two computed together as a response's ee and se are (one native call;
//    on AVX-512 IFMA lanes about the cost of one, else two ladders), one fresh key pair (random
//    scalar and its public key, a fixed-base multiplication), and the full-handshake rate they
//    alone would allow: a handshake makes 6 shared secrets (es alone on each side, ee and se
//    together on each side; ss is precomputed per peer) and 2 key pairs (the native steps also
//    share one field inversion per message, so their Diffie-Hellman work is a little below this mark);
//  - floodCookieReplyUs, floodCookieBudgetSpentDropUs, floodRateLimitedDropUs: what a flood
//    initiation costs under load: answered with a cookie, dropped once the cookie budget is spent
//    (no MAC computed for a zero mac2), dropped after its macs but before any Diffie-Hellman (a
//    source that holds a cookie for its address, over its rate).
import { Device, type Action } from '../src/wireguard/index.js';
import { COOKIE_REPLY_RATE } from '../src/wireguard/handshake-limiter.js';
import { cryptoBackend, generatePrivateKey, x25519Into } from '../src/crypto/index.js';
import { native } from '../src/native/addon.js';

const N = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 5);
const WARMUP = Number(process.argv[4] ?? 3);
for (const [name, v, min] of [['N', N, 1], ['rounds', ROUNDS, 1], ['warmup', WARMUP, 0]] as const) {
  if (Number.isInteger(v) && v >= min) continue;
  console.error(`usage: node dist/bench/wireguard-handshake.js [N] [rounds] [warmup]: ${name} must be an integer >= ${min}, got ${process.argv[2 + ['N', 'rounds', 'warmup'].indexOf(name)]}`);
  process.exit(2);
}
// No load threshold: this measures what a handshake costs, not the flood defence (see the end).
const responder = new Device({ privateKey: generatePrivateKey().raw, handshakeLoadThreshold: Infinity });
const ep = { address: '192.0.2.2', port: 51871 };
const initiators = Array.from({ length: N }, () => new Device({ privateKey: generatePrivateKey().raw }));
for (const d of initiators) responder.addPeer({ publicKey: d.publicKey, endpoint: { address: '192.0.2.1', port: 51871 } });
const peers = initiators.map((d) => d.addPeer({ publicKey: responder.publicKey, endpoint: ep }));
const sources = initiators.map((_, i) => ({ address: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, port: 51871 }));

function datagram(acts: Action[]): Uint8Array {
  const a = acts.find((x) => x.kind === 'network');
  if (!a || a.kind !== 'network') throw new Error('no datagram');
  return a.datagram;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const init: number[] = [], resp: number[] = [], done: number[] = [], cpu: number[] = [], warmupCpu: number[] = [];
for (let r = 0; r < WARMUP + ROUNDS; r++) {
  const now = 1000 + r * 1000; // newer TAI64N and past the per-peer flood interval every round
  const before = responder.stats.handshakeResponsesSent;
  const cpuBefore = process.cpuUsage();
  let t = performance.now();
  const inits = initiators.map((d, i) => datagram(d.initiateHandshake(peers[i]!, now)));
  const initMs = performance.now() - t;
  t = performance.now();
  const resps = inits.map((d, i) => datagram(responder.decapsulate(d, sources[i]!, now)));
  const respMs = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < N; i++) initiators[i]!.decapsulate(resps[i]!, ep, now);
  const doneMs = performance.now() - t;
  const c = process.cpuUsage(cpuBefore);
  const cpuMs = (c.user + c.system) / 1000;
  if (r < WARMUP) warmupCpu.push(cpuMs);
  else {
    init.push(initMs);
    resp.push(respMs);
    done.push(doneMs);
    cpu.push(cpuMs);
  }
  const completed = initiators.filter((d) => d.stats.handshakesCompleted === r + 1).length;
  if (completed !== N || responder.stats.handshakeResponsesSent - before !== N) throw new Error(`round ${r}: ${completed}/${N} handshakes completed`);
}

// The Diffie-Hellman mark: X25519 alone, one result per call, on this machine, in this process.
const k = generatePrivateKey();
const other = generatePrivateKey().publicKey;
const shared = new Uint8Array(32);
let t = performance.now();
for (let i = 0; i < 2000; i++) x25519Into(shared, k, other);
const x25519Us = ((performance.now() - t) * 1000) / 2000;
let x25519PairUs = 2 * x25519Us;
if (cryptoBackend() === 'native') {
  const addon = native();
  const pairOut = new Uint8Array(64), pairKeys = new Uint8Array(64), pairPoints = new Uint8Array(64);
  pairKeys.set(k.raw);
  pairKeys.set(generatePrivateKey().raw, 32);
  pairPoints.set(other);
  pairPoints.set(other, 32);
  t = performance.now();
  for (let i = 0; i < 2000; i++) addon.noiseX25519Many(pairOut, pairKeys, pairPoints);
  x25519PairUs = ((performance.now() - t) * 1000) / 2000;
}
t = performance.now();
for (let i = 0; i < 2000; i++) generatePrivateKey();
const ephemeralKeyUs = ((performance.now() - t) * 1000) / 2000;

// Under a flood: what one initiation without mac2 costs the node (a cookie reply), and one from a
// source over its rate (dropped before any crypto). Fresh initiations, distinct or one source.
const flooded = new Device({ privateKey: generatePrivateKey().raw });
flooded.underLoad = true;
const floodInits = initiators.map((d, i) => datagram(d.initiateHandshake(d.addPeer({ publicKey: flooded.publicKey, endpoint: ep }), 100_000 + i)));
// (4 ms apart: the device-wide cookie-reply budget is COOKIE_REPLY_RATE a second)
const replyGap = 1000 / COOKIE_REPLY_RATE;
t = performance.now();
for (let i = 0; i < N; i++) flooded.decapsulate(floodInits[i]!, sources[i]!, 100_000 + i * replyGap);
const cookieReplyUs = ((performance.now() - t) * 1000) / N;
const later = 100_000 + N * replyGap;
// Spoofed sources once the cookie-reply budget is spent: dropped, no MAC computed for a zero mac2.
const spoofed = initiators.map((_, i) => ({ address: `172.16.${(i >> 8) & 255}.${i & 255}`, port: 51871 }));
t = performance.now();
for (let i = 0; i < N; i++) flooded.decapsulate(floodInits[i]!, spoofed[i]!, later);
const budgetSpentUs = ((performance.now() - t) * 1000) / N;
// A source that receives at its address holds a cookie: its messages pass mac1 and mac2 (the
// protocol's order) and meet its own rate; past its burst each costs the two MACs, no DH.
const oneSource = { address: '192.0.2.99', port: 51871 };
const owner = initiators[0]!, ownerPeer = owner.addPeer({ publicKey: flooded.publicKey, endpoint: ep });
const refilled = later + 1000;
owner.decapsulate(datagram(flooded.decapsulate(datagram(owner.initiateHandshake(ownerPeer, refilled)), oneSource, refilled)), ep, refilled);
const withCookie = Array.from({ length: N }, () => datagram(owner.initiateHandshake(ownerPeer, refilled)));
const limitedBefore = flooded.stats.drops.handshakeRateLimited;
t = performance.now();
for (let i = 0; i < N; i++) flooded.decapsulate(withCookie[i]!, oneSource, refilled);
const rateLimitedUs = ((performance.now() - t) * 1000) / N;
if (flooded.stats.cookieRepliesSent < N || flooded.stats.drops.handshakeRateLimited - limitedBefore < N - 10) throw new Error(`flood paths not taken: ${JSON.stringify(flooded.stats)}`);

const us = (ms: number) => Number(((ms * 1000) / N).toFixed(1));
const full = median(init.map((x, i) => x + resp[i]! + done[i]!));
console.log(JSON.stringify({
  handshakes: N,
  rounds: ROUNDS,
  warmupRounds: WARMUP,
  crypto: cryptoBackend(),
  createInitiationUs: us(median(init)),
  responderUs: us(median(resp)),
  consumeResponseUs: us(median(done)),
  fullHandshakeUs: us(full),
  responderPerSecond: Math.round((N / median(resp)) * 1000),
  fullHandshakesPerSecond: Math.round((N / full) * 1000),
  fullHandshakeCpuUs: us(median(cpu)),
  fullHandshakesPerCpuSecond: Math.round((N / median(cpu)) * 1000),
  // all warm-up rounds together: what the first WARMUP x N handshakes of a process cost
  warmupFullHandshakesPerCpuSecond: WARMUP ? Math.round(((WARMUP * N) / warmupCpu.reduce((a, b) => a + b, 0)) * 1000) : null,
  x25519Us: Number(x25519Us.toFixed(1)),
  x25519PairUs: Number(x25519PairUs.toFixed(1)),
  ephemeralKeyUs: Number(ephemeralKeyUs.toFixed(1)),
  dhBoundFullPerSecond: Math.round(1e6 / (2 * x25519Us + 2 * x25519PairUs + 2 * ephemeralKeyUs)),
  floodCookieReplyUs: Number(cookieReplyUs.toFixed(2)),
  floodCookieBudgetSpentDropUs: Number(budgetSpentUs.toFixed(2)),
  floodRateLimitedDropUs: Number(rateLimitedUs.toFixed(2)),
}));
