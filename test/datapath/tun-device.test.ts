// Real TUN devices in throwaway namespaces: ping answered from user space through readBatch and
// writeBatch, and TCP through two vnet/TSO TUNs forwarded by a worker (super-packets split on read,
// coalesced on write) with the transferred bytes checked end to end.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { deleteNetns, makeNetns, runScenario, startScenario, stopScenario } from './fixtures/netns.js';
import { run } from '../../src/util/exec.js';
import { TunDevice } from '../../src/datapath/tun-device.js';
import { isVeilError } from '../../src/util/errors.js';

const namespaces: string[] = [];
after(() => { for (const ns of namespaces) deleteNetns(ns); });

test('a multi-queue TUN answers ping (IPv4 and IPv6) through readBatch and writeBatch', () => {
  const ns = makeNetns('ping');
  namespaces.push(ns);
  const r = runScenario(ns, ['ping', 'veil-tdp0']) as { pingV4Exit: number; pingV6Exit: number; seen: { v4: number; v6: number; offsetsOk: boolean; drainedOk: boolean }; queues: number[]; sameName: boolean };
  assert.equal(r.pingV4Exit, 0, JSON.stringify(r));
  assert.equal(r.pingV6Exit, 0, JSON.stringify(r));
  assert.equal(r.seen.v4, 3);
  assert.equal(r.seen.v6, 3);
  assert.ok(r.seen.offsetsOk, 'packets sit at their slot headroom');
  assert.ok(r.seen.drainedOk, 'every short read reports the device drained');
  assert.notEqual(r.queues[0], r.queues[1]);
  assert.ok(r.sameName, 'both queues belong to one device');
});

/** Runs a node one-liner inside ns; resolves with stdout. */
function nodeIn(ns: string, code: string, args: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += String(d); });
    p.stderr.on('data', (d) => { err += String(d); });
    p.on('close', (c) => (c === 0 ? resolve(out.trim()) : reject(new Error(`node in ${ns} exited ${c}: ${err}`))));
  });
}

const SERVER = `
const host = process.argv[1];
const h = require('crypto').createHash('sha256'); let n = 0;
const s = require('net').createServer((c) => { c.on('data', (d) => { h.update(d); n += d.length; });
  c.on('end', () => { console.log(JSON.stringify({ n, sha: h.digest('hex') })); s.close(); }); });
s.listen(5301, host, () => console.log('listening'));`;
const CLIENT = `
const host = process.argv[1];
const crypto = require('crypto'); const h = crypto.createHash('sha256'); let sent = 0;
const c = require('net').connect(5301, host, () => {
  const send = () => { while (sent < 48 << 20) { const b = crypto.createHash('sha512').update(String(sent)).digest(); const chunk = Buffer.concat(Array(1024).fill(b)).subarray(0, 65536 - (sent % 7));
    h.update(chunk); sent += chunk.length; if (!c.write(chunk)) return c.once('drain', send); }
    c.end(() => console.log(JSON.stringify({ n: sent, sha: h.digest('hex') }))); };
  send(); });`;

test('vnetHdr + TSO: super-packets are split on read and coalesced on write, TCP data intact', async () => {
  const a = makeNetns('a'), b = makeNetns('b');
  namespaces.push(a, b);
  const fwd = await startScenario(a, ['forward', 'veil-tdpa', 'veil-tdpb', b]);
  try {
    assert.equal(fwd.first['ready'], true);
    assert.equal(fwd.first['offloads'], 7, 'CSUM|TSO4|TSO6 accepted');
    // for each family: a server that hashes what it receives, a client that sends 48 MiB of known bytes
    for (const host of ['10.202.0.2', 'fd00:202::2']) {
      let listening: () => void = () => undefined;
      const ready = new Promise<void>((r) => { listening = r; });
      const server = new Promise<string>((resolve, reject) => {
        const p = spawn('ip', ['netns', 'exec', b, process.execPath, '-e', SERVER, host], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d) => { out += String(d); if (out.includes('listening')) listening(); });
        p.on('close', (c) => (c === 0 ? resolve(out) : reject(new Error(`server exited ${c}`)))); // 'close': its output read
      });
      await Promise.race([ready, server]); // the client connects once the server listens (a fixed 400 ms was a guess)
      const sent = JSON.parse(await nodeIn(a, CLIENT, [host])) as { n: number; sha: string };
      const got = JSON.parse((await server).trim().split('\n').pop()!) as { n: number; sha: string };
      assert.equal(got.n, sent.n, host);
      assert.equal(got.sha, sent.sha, host);
    }
    // throughput figure with iperf3 (printed, not asserted)
    const srv = spawn('ip', ['netns', 'exec', b, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    const ip = run(['ip', 'netns', 'exec', a, 'iperf3', '-c', '10.202.0.2', '-t', '2', '-J']);
    srv.kill();
    const bps = (JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    console.log(`# TCP through the TUN pair (split + coalesce, no crypto): ${(bps / 1e9).toFixed(2)} Gbit/s`);
  } finally {
    const end = await stopScenario(fwd) as { counters: { a: Record<string, number>; b: Record<string, number> } };
    const { a: ca, b: cb } = end.counters;
    console.log(`# counters A: ${JSON.stringify(ca)}\n# counters B: ${JSON.stringify(cb)}`);
    assert.ok(ca['gsoIn']! > 10, 'the kernel handed over TSO super-packets');
    assert.ok(ca['segmentsOut']! > ca['gsoIn']! * 2, 'and they were split into segments');
    assert.ok(cb['coalescedWrites']! > 10, 'segments were coalesced on write');
    assert.equal(ca['dropMalformed'], 0);
    assert.equal(cb['writeErrors'], 0);
  }
});

test('writeBatch with yieldEvery gives up the CPU between every yieldEvery writes of a batch and delivers every packet', () => {
  const ns = makeNetns('yield');
  namespaces.push(ns);
  const r = runScenario(ns, ['tun-yield', 'veil-tdy0']) as { writes: { written: number; yields: number }[]; ids: number[]; counters: Record<string, number> };
  // 10 writes: a yield after the 4th and the 8th (none after the last); none without yieldEvery
  assert.deepEqual(r.writes, [{ written: 10, yields: 2 }, { written: 10, yields: 0 }], JSON.stringify(r));
  assert.deepEqual(r.ids, [...Array(10).keys(), ...Array(10).keys()], 'both batches arrived whole and in order');
  assert.equal(r.counters['writeErrors'], 0);
});

test('a bad TUN name, or a name taken by another kind of link, is a VeilError', () => {
  assert.throws(() => TunDevice.open('this-name-is-far-too-long'), (e) => isVeilError(e) && e.code === 'TUN_NAME');
  assert.throws(() => TunDevice.open('lo'), (e) => isVeilError(e) && /cannot create TUN device lo/.test(e.message) && !!e.hint);
});
