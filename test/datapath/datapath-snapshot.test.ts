// The datapath handover's document and the ESP numbers it carries: the snapshot round-trips with
// its keys as bytes; another version, an empty (already taken) or a foreign document is refused
// with the reason (the agent then starts cold); an ESP sender resumes right after the last number
// sent, within the block already durable; an ESP replay window comes back exactly (what was seen
// stays refused, what was not stays acceptable).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DATAPATH_SNAPSHOT_VERSION, decodeSnapshot, encodeSnapshot, makeSnapshot, sameEngineInit, type DatapathSnapshot } from '../../src/datapath/datapath-snapshot.js';
import type { EspEngineState, WorkerInit } from '../../src/datapath/messages.js';
import { packTransforms, type PackedTransform } from '../../src/esp/esp-transform.js';
import { OutboundSequence, SEQ_NOT_RESERVED } from '../../src/esp/sequence-store.js';
import { EspReplayWindow } from '../../src/esp/replay-window.js';
import { listOf } from '../../src/util/one-or-more.js';

const key = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const init: Extract<WorkerInit, { kind: 'esp' }> = {
  kind: 'esp', localIp: '172.18.0.2', mtu: 1400, marksFile: '/x/marks.json', marks: { a: 1 }, cryptoThreads: 1, priority: -10, realtime: true,
  tun: { fd: 7, name: 'veil_ipsec0', vnetHdr: true, multiQueue: false, offloads: 7 },
  udp: { fd: 8, family: 4, address: '172.18.0.2', port: 4500, gro: true, gso: true, bufferBytes: 1 << 20 },
};
const gcm = (salt: number): PackedTransform => packTransforms([{ kind: 'aead', name: 'rfc4106(gcm(aes))', key, salt: Uint8Array.of(salt, salt, salt, salt), icvLength: 16 }])[0]!;
const state: EspEngineState = {
  peers: [{
    name: 'w1', ip: '172.18.0.3', allowedIPs: ['10.244.1.0/24'], activeSpi: 3,
    outbound: [{ spi: 3, transform: gcm(9) }],
    inbound: [{ spi: 3, transform: gcm(8) }],
  }],
  sas: [{ direction: 'out', spi: 3, peer: '172.18.0.3', last: 41, bytes: 10, packets: 2 }],
};

test('a snapshot round-trips: fds left out, keys back as bytes', () => {
  const s = makeSnapshot(init, { state, exportedAtUnixMs: 1234 });
  assert.equal(s.version, DATAPATH_SNAPSHOT_VERSION);
  assert.equal((s.tun as { fd?: number }).fd, undefined, 'fd numbers mean nothing in the next process');
  const r = decodeSnapshot(encodeSnapshot(s));
  assert.ok(r.ok, !r.ok ? r.reason : '');
  const back = r.snapshot as DatapathSnapshot<'esp'>;
  assert.deepEqual(back, s);
  assert.ok(listOf(back.state.peers[0]!.outbound)[0]!.transform.kind === 'aead' && listOf(back.state.peers[0]!.outbound)[0]!.transform.material instanceof Uint8Array);
  assert.ok(sameEngineInit(back.engine, { ...back.engine, marks: { a: 2 } } as typeof back.engine), 'newer marks are the same engine');
  assert.ok(!sameEngineInit(back.engine, { ...s.engine, mtu: 1300 }), 'another MTU is not');
});

test('a snapshot this build cannot use is refused with the reason', () => {
  const s = makeSnapshot(init, { state, exportedAtUnixMs: 1234 });
  const other = decodeSnapshot(encodeSnapshot({ ...s, version: DATAPATH_SNAPSHOT_VERSION + 1 }));
  assert.ok(!other.ok && new RegExp(`version ${DATAPATH_SNAPSHOT_VERSION + 1}, this build reads version ${DATAPATH_SNAPSHOT_VERSION}`).test(other.reason));
  const empty = decodeSnapshot(new Uint8Array(0));
  assert.ok(!empty.ok && /empty \(already taken/.test(empty.reason));
  const junk = decodeSnapshot(Buffer.from('{"format":"something else"}'));
  assert.ok(!junk.ok && /not a veil datapath handover/.test(junk.reason));
  const cut = decodeSnapshot(encodeSnapshot(s).subarray(0, 40));
  assert.ok(!cut.ok && /not JSON/.test(cut.reason));
  const { sas: _sas, ...noSas } = s.state;
  const partial = decodeSnapshot(encodeSnapshot({ ...s, state: noSas } as unknown as DatapathSnapshot));
  assert.ok(!partial.ok && /has no SAs/.test(partial.reason));
});

test('an ESP sender resumes right after the last number sent, inside the durable block, and reserves before it runs out', () => {
  const s = OutboundSequence.resume(41, 100, 64);
  assert.equal(s.last, 41);
  assert.equal(s.take(), 42, 'never a number the stopped datapath sent');
  for (let n = 43; n <= 100; n++) assert.equal(s.take(), n);
  assert.equal(s.take(), SEQ_NOT_RESERVED, 'nothing past the durable mark before a new one is persisted');
  assert.equal(OutboundSequence.resume(50, 10).take(), SEQ_NOT_RESERVED, 'a mark below the last number sent reserves first');
});

test('an ESP replay window comes back exactly: seen numbers stay refused, unseen ones acceptable once', () => {
  const w = new EspReplayWindow();
  for (const seq of [1, 2, 3, 5, 8, 1000, 1003]) assert.ok(w.accept(seq));
  const back = EspReplayWindow.restore(JSON.parse(JSON.stringify(w.save())))!;
  assert.equal(back.top, 1003);
  for (const seq of [8, 1000, 1003]) assert.equal(back.check(seq), false, `${seq} was seen`);
  for (const seq of [1001, 1002, 1004]) assert.equal(back.check(seq), true, `${seq} was not`);
  assert.ok(back.accept(1002) && !back.accept(1002));
  assert.equal(EspReplayWindow.restore({ top: 5, bits: [1, 2] }), undefined, 'a window of another size');
});
