import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonArrayWriter, RawJson, chunksOf, jsonBody } from '../../src/util/raw-json.js';

const peer = (i: number) => ({ node: `node-${i}`, 'public-key': 'é'.repeat(i % 5) + 'k'.repeat(43), endpoint: i % 3 ? `10.0.${i >> 8}.${i & 255}:51871` : undefined, 'allowed-ips': [`10.${i}.0.0/24`], 'transfer-rx': i });

test('a JSON array written entry by entry, past its first buffer, is placed whole where its RawJson stands', () => {
  const list = new JsonArrayWriter();
  const peers = Array.from({ length: 2000 }, (_, i) => peer(i)); // ~250 KB: the writer grows from 64 KB
  for (const p of peers) list.add(p);
  assert.equal(list.count, 2000);
  const written = list.end();
  assert.ok(written.chunks.length > 1, 'a list past one chunk goes on in the next');
  // Moved to another thread as the worker moves it: transferred, the writer's side left empty.
  const moved = structuredClone(written.chunks, { transfer: chunksOf(written) });
  assert.ok(written.chunks.every((c) => c.byteLength === 0), 'transferred, not copied');
  const answer = { mode: 'Wireguard', interfaces: [{ name: 'veil_wg0', peers: new RawJson(moved) }], probes: [{ node: 'a\u00e9', sent: 1 }] };
  const body = jsonBody(answer);
  assert.ok(Buffer.isBuffer(body));
  assert.deepEqual(JSON.parse(body.toString('utf8')), { mode: 'Wireguard', interfaces: [{ name: 'veil_wg0', peers: JSON.parse(JSON.stringify(peers)) }], probes: [{ node: 'a\u00e9', sent: 1 }] });
});

test('an empty list is [], two RawJsons each in its place, and an answer without one stays a string', () => {
  const empty = new JsonArrayWriter().end();
  const two = new JsonArrayWriter();
  two.add(1); two.add('x');
  assert.equal(jsonBody({ a: empty, b: 'mid', c: two.end() }).toString(), '{"a":[],"b":"mid","c":[1,"x"]}');
  assert.equal(jsonBody({ a: 1 }), '{"a":1}');
});

test('JSON.stringify alone refuses a RawJson (its text would be lost)', () => {
  assert.throws(() => JSON.stringify({ a: new RawJson([Buffer.from('[]')]) }), /placed by jsonBody/);
});
