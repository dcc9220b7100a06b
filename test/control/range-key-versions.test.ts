// The reading of etcd's Range answers for names and versions, against answers encoded by protobufjs
// from etcd's own rpc.proto (the one the etcd3 client library ships): every key and mod_revision,
// revisions past 2^32, fields it does not read skipped, a broken answer refused with a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readRangeKeys, readTxnRanges } from '../../src/control/etcd/range-key-versions.js';
import { isVeilError } from '../../src/util/errors.js';

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof import('protobufjs');
const root = new protobuf.Root().loadSync(require.resolve('etcd3/proto/rpc.proto'), { keepCase: true }); // etcd's field names, as the client loads them
const RangeResponse = root.lookupType('etcdserverpb.RangeResponse');
const TxnResponse = root.lookupType('etcdserverpb.TxnResponse');

const encode = (msg: Record<string, unknown>) => Buffer.from(RangeResponse.encode(RangeResponse.fromObject(msg)).finish());
const read = (buf: Buffer) => {
  const keys: [string, number][] = [];
  const summary = readRangeKeys(buf, (b, start, end, rev) => keys.push([b.toString('utf8', start, end), rev]));
  return { keys, summary };
};

test('every key and its mod_revision, the header revision, more and count', () => {
  const big = 2 ** 40 + 5;
  const buf = encode({
    header: { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: String(big + 9), raft_term: '7' },
    kvs: [
      { key: Buffer.from('veil/c/nodes/a'), create_revision: '3', mod_revision: '4', version: '2', lease: '7587861231285799439' },
      { key: Buffer.from('veil/c/nodes/b'), create_revision: '5', mod_revision: String(big), version: '1', value: Buffer.from('{"kind":"Node"}') },
      { key: Buffer.from('veil/c/nodes/ü'), mod_revision: '1' },
    ],
    more: true, count: '4000',
  });
  const { keys, summary } = read(buf);
  assert.deepEqual(keys, [['veil/c/nodes/a', 4], ['veil/c/nodes/b', big], ['veil/c/nodes/ü', 1]]);
  assert.deepEqual(summary, { revision: big + 9, more: true, count: 4000, keys: 3 });
});

test('an empty answer, and one with only a header', () => {
  assert.deepEqual(read(Buffer.alloc(0)).summary, { revision: 0, more: false, count: 0, keys: 0 });
  assert.deepEqual(read(encode({ header: { revision: '12' } })).summary, { revision: 12, more: false, count: 0, keys: 0 });
});

test('fields it does not read are skipped, whatever their wire type', () => {
  const known = encode({ header: { revision: '30' }, kvs: [{ key: Buffer.from('k'), mod_revision: '29' }], count: '1' });
  // field 9 varint, field 10 fixed64, field 11 length-delimited, field 12 fixed32: as a newer etcd might add
  const unknown = Buffer.from([9 << 3 | 0, 0xac, 0x02, 10 << 3 | 1, 1, 2, 3, 4, 5, 6, 7, 8, 11 << 3 | 2, 2, 0xff, 0xff, 12 << 3 | 5, 1, 2, 3, 4]);
  const { keys, summary } = read(Buffer.concat([unknown, known, unknown]));
  assert.deepEqual(keys, [['k', 29]]);
  assert.deepEqual(summary, { revision: 30, more: false, count: 1, keys: 1 });
});

test('a broken answer is refused, not misread', () => {
  const good = encode({ header: { revision: '30' }, kvs: [{ key: Buffer.from('veil/c/nodes/a'), mod_revision: '29' }] });
  for (const bad of [good.subarray(0, good.length - 3), Buffer.from([0x12, 0x02, 0x18, 0x05]) /* a KeyValue without a key */, Buffer.from([0x08, 0xff]), Buffer.from([0x0b])]) {
    assert.throws(() => read(bad), (e) => isVeilError(e) && e.code === 'ETCD_BAD_ANSWER' && /not a RangeResponse/.test(e.message), bad.toString('hex'));
  }
});

test('a transaction of ranges: its revision, each range\'s count and keys, other operations skipped', () => {
  const big = 2 ** 40 + 5;
  const buf = Buffer.from(TxnResponse.encode(TxnResponse.fromObject({
    header: { cluster_id: '14841639068965178418', revision: String(big + 9), raft_term: '7' },
    succeeded: true,
    responses: [
      { response_range: { header: { revision: String(big + 9) }, count: '5000' } },
      { response_put: { header: { revision: '3' } } },
      { response_range: { header: { revision: String(big + 9) }, kvs: [{ key: Buffer.from('veil/c/nodes/a'), mod_revision: String(big), create_revision: '2', version: '4' }, { key: Buffer.from('veil/c/nodes/b'), mod_revision: '8' }], count: '5000' } },
    ],
  })).finish());
  const keys: [string, number, number][] = [];
  const summary = readTxnRanges(buf, (b, start, end, rev, range) => keys.push([b.toString('utf8', start, end), rev, range]));
  assert.deepEqual(keys, [['veil/c/nodes/a', big, 1], ['veil/c/nodes/b', 8, 1]]);
  assert.deepEqual(summary, { revision: big + 9, ranges: [{ revision: big + 9, more: false, count: 5000, keys: 0 }, { revision: big + 9, more: false, count: 5000, keys: 2 }] });
  const broken = buf.subarray(0, buf.length - 3);
  assert.throws(() => readTxnRanges(broken, () => undefined), (e) => isVeilError(e) && e.code === 'ETCD_BAD_ANSWER' && /to a transaction is not a TxnResponse/.test(e.message));
});
