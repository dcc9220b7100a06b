// UDP batches on loopback inside a throwaway namespace: sendmmsg to per-packet peers with
// UDP_SEGMENT, recvmmsg with UDP_GRO split back into packets, sources reported per packet, IPv6
// and dual-stack sockets, and the single control send.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';
import { UdpSocket } from '../../src/datapath/udp-socket.js';
import { isVeilError } from '../../src/util/errors.js';

const namespaces: string[] = [];
after(() => { for (const ns of namespaces) deleteNetns(ns); });

interface UdpResult {
  sent: number; expected: { gro: string[]; plain: string[] }; got: string[]; gotPlain: string[]; plainDrained: boolean[];
  contentOk: boolean; srcOk: boolean; dualPort: number; dualSent: number;
  from6: { n: number; text: string; family: number; addr: string; port: number };
  from4: { n: number; text: string; family: number; addr: string; port: number };
  ctl: boolean; ctlText: string; senderCounters: Record<string, number>; groCounters: Record<string, number>; bufferBytes: number;
}

test('UDP batches: GSO send, GRO receive, per-packet sources, IPv6 and dual-stack', () => {
  const ns = makeNetns('udp');
  namespaces.push(ns);
  const r = runScenario(ns, ['udp']) as unknown as UdpResult;
  assert.equal(r.sent, 140);
  assert.deepEqual(r.got, r.expected.gro, 'every GRO-delivered packet, in order, right length');
  assert.deepEqual(r.gotPlain, r.expected.plain);
  assert.deepEqual(r.plainDrained, [false, false, true], 'drained once a batch comes back short of its slots');
  assert.ok(r.contentOk, 'payload bytes intact');
  assert.ok(r.srcOk, 'source 127.0.0.1 and the sender port on every packet');
  assert.ok(r.senderCounters['sendCalls']! <= 2, `one sendmmsg for the batch (got ${r.senderCounters['sendCalls']})`);
  assert.ok(r.groCounters['groSplit']! > 0, 'the kernel coalesced datagrams (UDP_GRO) and they were split');
  assert.equal(r.dualSent, 2);
  assert.deepEqual(r.from6, { n: 1, text: 'hello6', family: 6, addr: '::1', port: r.dualPort });
  assert.deepEqual(r.from4, { n: 1, text: 'hello4', family: 4, addr: '127.0.0.1', port: r.dualPort });
  assert.equal(r.ctl, true);
  assert.equal(r.ctlText, 'ctl');
  assert.ok(r.bufferBytes >= 7 << 20, `socket buffers forced to 7 MiB (got ${r.bufferBytes})`);
});

test('a burst of GRO super-datagrams is received whole, whatever the batch: no packet dropped for want of descriptors', () => {
  const ns = makeNetns('gro');
  namespaces.push(ns);
  const r = runScenario(ns, ['gro-burst']) as { sent: number; received: number; inOrder: boolean; counters: Record<string, number> };
  assert.equal(r.sent, 512);
  assert.ok(r.counters['groSplit']! > 0, 'the kernel delivered super-datagrams');
  assert.equal(r.counters['dropNoRoom'], 0, 'no segment dropped because the batch was full');
  assert.equal(r.received, 512, 'every packet received');
  assert.ok(r.inOrder, 'in order');
});

interface RawEspFamily { sent: number; single: boolean; sentShapes: string[]; got: string[]; contentOk: boolean; sources: string[]; rawEsp: boolean }

test('raw ESP (IP protocol 50, no UDP): batches both ways in IPv4 and IPv6, ESP bytes from the first byte, the sender per packet', () => {
  const ns = makeNetns('rawesp');
  namespaces.push(ns);
  const r = runScenario(ns, ['raw-esp']) as unknown as Record<'v4' | 'v6', RawEspFamily>;
  for (const [fam, from] of [['v4', '127.0.0.1:0'], ['v6', 'fd00:e5::1:0']] as const) {
    const f = r[fam];
    assert.equal(f.sent, 12, fam);
    assert.equal(f.single, true, `${fam}: single send`);
    assert.deepEqual(f.got, [...f.sentShapes, `${0x2000}/99/14`], `${fam}: every packet, SPI first (an IPv4 header skipped), its length, in order`);
    assert.ok(f.contentOk, `${fam}: payload intact`);
    assert.deepEqual(f.sources, [from], `${fam}: the sender's address, no port`);
    assert.ok(f.rawEsp, `${fam}: a worker adopts it as raw ESP`);
  }
});

test('bad addresses and busy ports are VeilErrors with hints', () => {
  assert.throws(() => UdpSocket.open('10.0.0.300', 0), (e) => isVeilError(e) && e.code === 'UDP_ADDRESS');
  assert.throws(() => UdpSocket.open('127.0.0.1', 70000), (e) => isVeilError(e) && e.code === 'UDP_PORT');
  const s = UdpSocket.open('127.0.0.1', 0);
  try {
    assert.throws(() => UdpSocket.open('127.0.0.1', s.port), (e) => isVeilError(e) && e.code === 'DATAPATH_EADDRINUSE' && /another socket/.test(e.hint ?? ''));
  } finally {
    s.close();
  }
  assert.throws(() => UdpSocket.open('192.0.2.77', 0), (e) => isVeilError(e) && e.code === 'DATAPATH_EADDRNOTAVAIL');
});
