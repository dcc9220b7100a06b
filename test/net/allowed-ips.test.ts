import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AllowedIps, type PrefixRef } from '../../src/net/allowed-ips.js';
import { formatCidr, maskAddress, parseCidr, parseIp, type Cidr } from '../../src/net/cidr.js';

function look<T>(t: AllowedIps<T>, addr: string): T | undefined {
  const a = parseIp(addr);
  // at an offset inside a larger buffer, as packets are
  const buf = new Uint8Array(40);
  buf.set(a.bytes, 12);
  return t.lookup(buf, 12, a.family);
}

test('longest prefix wins, IPv4 and IPv6 kept apart', () => {
  const t = new AllowedIps<string>();
  t.insert('10.0.0.0/8', 'a');
  t.insert('10.1.0.0/16', 'b');
  t.insert('10.1.2.0/24', 'c');
  t.insert('10.1.2.3/32', 'd');
  t.insert('0.0.0.0/0', 'default');
  t.insert('fd00::/8', 'v6a');
  t.insert('fd00:1::/32', 'v6b');
  t.insert('fd00:1:0:0:0:0:0:7/128', 'v6c');
  assert.equal(look(t, '10.1.2.3'), 'd');
  assert.equal(look(t, '10.1.2.4'), 'c');
  assert.equal(look(t, '10.1.3.4'), 'b');
  assert.equal(look(t, '10.9.3.4'), 'a');
  assert.equal(look(t, '11.0.0.1'), 'default');
  assert.equal(look(t, 'fd00:1::7'), 'v6c');
  assert.equal(look(t, 'fd00:1::8'), 'v6b');
  assert.equal(look(t, 'fd42::1'), 'v6a');
  assert.equal(look(t, '2001:db8::1'), undefined);
  assert.equal(t.size, 8);
});

test('re-insert replaces, removal falls back to shorter prefixes and prunes', () => {
  const t = new AllowedIps<string>();
  t.insert('10.1.0.0/16', 'b');
  t.insert('10.1.2.0/24', 'c');
  t.insert('10.1.2.0/24', 'c2');
  assert.equal(look(t, '10.1.2.9'), 'c2');
  assert.equal(t.size, 2);
  assert.ok(t.remove('10.1.2.0/24'));
  assert.ok(!t.remove('10.1.2.0/24'));
  assert.ok(!t.remove('10.1.0.0/17'));
  assert.equal(look(t, '10.1.2.9'), 'b');
  assert.ok(t.remove('10.1.0.0/16'));
  assert.equal(look(t, '10.1.2.9'), undefined);
  assert.equal(t.size, 0);
  assert.deepEqual(t.entries(), []);
});

test('removeValue drops every prefix of a peer and leaves the others', () => {
  const peerA = { name: 'A' }, peerB = { name: 'B' };
  const t = new AllowedIps<object>();
  for (const c of ['10.0.1.0/24', '10.0.2.0/24', 'fd00:a::/64', '10.0.1.128/25']) t.insert(c, peerA);
  for (const c of ['10.0.1.64/26', '10.0.0.0/16', 'fd00:b::/64']) t.insert(c, peerB);
  assert.deepEqual(t.prefixesOf(peerA).sort(), ['10.0.1.0/24', '10.0.1.128/25', '10.0.2.0/24', 'fd00:a::/64']);
  assert.equal(t.removeValue(peerA), 4);
  assert.equal(look(t, '10.0.1.200'), peerB); // falls back to 10.0.0.0/16
  assert.equal(look(t, '10.0.1.70'), peerB);
  assert.equal(look(t, 'fd00:a::1'), undefined);
  assert.equal(look(t, 'fd00:b::1'), peerB);
  assert.equal(t.size, 3);
});

// Property check against a linear scan, with random prefixes, lookups and removals.
test('agrees with a brute-force longest-prefix match on random tables', () => {
  let seed = 12345;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (const family of [4, 6] as const) {
    const len = family === 4 ? 4 : 16, max = family === 4 ? 32 : 128;
    const t = new AllowedIps<number>();
    const model = new Map<string, { c: Cidr; v: number }>();
    const randAddr = () => {
      const b = new Uint8Array(len);
      // few distinct leading bytes so that prefixes nest and share paths
      for (let i = 0; i < len; i++) b[i] = i < 2 ? [10, 11, 0xfd][rnd(3)]! : rnd(4) * 64 + rnd(2);
      return b;
    };
    for (let round = 0; round < 3000; round++) {
      const op = rnd(10);
      if (op < 6) {
        const p = rnd(max + 1);
        const c: Cidr = { family, bytes: maskAddress(randAddr(), p), prefixLength: p };
        t.insert(c, round);
        model.set(formatCidr(c), { c, v: round });
      } else if (op < 8 && model.size > 0) {
        const keys = [...model.keys()];
        const k = keys[rnd(keys.length)]!;
        assert.ok(t.remove(parseCidr(k)));
        model.delete(k);
      } else {
        const a = randAddr();
        let best: { c: Cidr; v: number } | undefined;
        for (const e of model.values()) {
          const m = maskAddress(a, e.c.prefixLength);
          if (m.every((x, i) => x === e.c.bytes[i]) && (!best || e.c.prefixLength > best.c.prefixLength)) best = e;
        }
        assert.equal(t.lookup(a, 0, family), best?.v);
      }
      assert.equal(t.size, model.size);
    }
  }
});

test('a packet\'s destination and source pick their owners, IPv4 and IPv6, at an offset', () => {
  const t = new AllowedIps<string>();
  for (const [prefix, node] of [['10.0.1.0/24', 'node1'], ['10.0.2.0/24', 'node2'], ['fd00:1::/64', 'node1'], ['fd00:2::/64', 'node2']]) t.insert(prefix!, node!);
  const buf = new Uint8Array(100);
  // IPv4 at 10: 10.0.1.5 -> 10.0.2.7
  buf[10] = 0x45;
  buf.set(parseIp('10.0.1.5').bytes, 10 + 12);
  buf.set(parseIp('10.0.2.7').bytes, 10 + 16);
  assert.equal(t.lookupSource(buf, 10), 'node1');
  assert.equal(t.lookupDestination(buf, 10), 'node2');
  // IPv6 at 50: fd00:2::9 -> fd00:1::3
  buf[50] = 0x60;
  buf.set(parseIp('fd00:2::9').bytes, 50 + 8);
  buf.set(parseIp('fd00:1::3').bytes, 50 + 24);
  assert.equal(t.lookupSource(buf, 50), 'node2');
  assert.equal(t.lookupDestination(buf, 50), 'node1');
});

test('entries give back every prefix as inserted, across the key words, and removed nodes are taken again', () => {
  const t = new AllowedIps<string>();
  const prefixes = ['0.0.0.0/0', '255.255.255.255/32', '128.0.0.0/1', '10.1.2.128/25', '::/0', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127',
    'fd00:1:2:3:8000::/65', 'fd00:1:2:3::/64', 'fd00:1::/33', '2001:db8::1/128'];
  for (let round = 0; round < 50; round++) { // churn: the same table again and again from nodes released before
    for (const p of prefixes) t.insert(p, p);
    assert.deepEqual(t.entries().map((e) => formatCidr(e.cidr)).sort(), [...prefixes].sort());
    for (const p of prefixes) assert.equal(t.get(p), p);
    assert.equal(look(t, 'fd00:1:2:3:8000::9'), 'fd00:1:2:3:8000::/65');
    assert.equal(look(t, 'fd00:1:2:3:7fff::9'), 'fd00:1:2:3::/64');
    assert.equal(look(t, 'fd00:1:7fff::1'), 'fd00:1::/33');
    assert.equal(look(t, 'fd00:1:8000::1'), '::/0');
    assert.equal(look(t, '10.1.2.200'), '10.1.2.128/25');
    assert.equal(look(t, '10.1.2.100'), '0.0.0.0/0');
    assert.equal(look(t, '200.1.1.1'), '128.0.0.0/1');
    for (const p of round % 2 ? [...prefixes].reverse() : prefixes) assert.ok(t.remove(p));
    assert.equal(t.size, 0);
    assert.equal(look(t, '10.1.2.200'), undefined);
  }
});

test('a handle names its prefix while the prefix is mapped, whatever is added or removed around it', () => {
  const t = new AllowedIps<string>();
  const a = t.insert('10.1.0.0/16', 'a'), b = t.insert('10.1.2.0/24', 'b'), six = t.insert('fd00:1::/64', 'c');
  assert.ok(a >= 0 && b >= 0 && six < 0, 'IPv4 handles are >= 0, IPv6 ones < 0');
  t.insert('10.0.0.0/8', 'd'); // above a: a fork or a parent is added, a keeps its node
  t.insert('10.1.3.0/24', 'e');
  t.remove('10.1.3.0/24');
  assert.equal(t.insert('10.1.0.9/16', 'a2'), a, 'the same prefix (another spelling) has the same handle');
  assert.deepEqual([t.prefixAt(a), t.valueAt(a)], ['10.1.0.0/16', 'a2']);
  assert.deepEqual([t.prefixAt(b), t.valueAt(b)], ['10.1.2.0/24', 'b']);
  assert.deepEqual([t.prefixAt(six), t.valueAt(six)], ['fd00:1::/64', 'c']);
  assert.equal(t.handleOf('10.1.2.7/24'), b);
  assert.equal(t.removeAt(b), true);
  assert.equal(t.valueAt(b), undefined);
  assert.equal(t.handleOf('10.1.2.0/24'), undefined);
  assert.equal(t.removeAt(b), false, 'once');
  assert.equal(t.get('10.1.2.0/24'), undefined);
  assert.equal(t.removeAt(six), true);
  assert.equal(t.size, 2);
  assert.equal(look(t, '10.1.2.3'), 'a2');
});

test('prefix refs: a handle or the text reads, spells and removes the same entry', () => {
  const t = new AllowedIps<string>();
  const h = t.insert('10.1.2.0/24', 'a');
  const refs: PrefixRef[] = [h, '10.1.2.0/24', '10.1.2.7/24']; // a handle, the text, another spelling of it
  for (const r of refs) assert.equal(t.valueOfRef(r), 'a');
  assert.deepEqual(refs.map((r) => t.textOf(r)), ['10.1.2.0/24', '10.1.2.0/24', '10.1.2.7/24']);
  const v6 = t.insert('fd00::/64', 'b');
  assert.equal(t.textOf(v6), 'fd00::/64');
  assert.equal(t.valueOfRef(v6), 'b');
  assert.ok(t.removeRef(h));
  for (const r of refs) assert.equal(t.valueOfRef(r), undefined);
  assert.equal(t.removeRef('10.1.2.0/24'), false);
  assert.ok(t.removeRef(v6));
  assert.equal(t.size, 0);
});

test('removeUnlisted drops exactly the entries no holder lists as its own, whatever the spelling', () => {
  const a = { name: 'A' }, b = { name: 'B' };
  const t = new AllowedIps<object>();
  const a4 = t.insert('10.0.1.0/24', a), a6 = t.insert('fd00:a::/64', a);
  t.insert('10.0.2.0/24', b);
  t.insert('10.0.3.0/24', b); // a stray: B lists it under no spelling
  t.insert('10.0.9.0/24', a); // a stray: listed only by B, whom it does not map to
  const listed = new Map<object, PrefixRef[]>([[a, [a4, a6]], [b, ['10.0.2.7/24', '10.0.9.0/24']]]); // B's first spelled unmasked
  const each = (visit: (h: object, p: PrefixRef) => void) => { for (const [h, refs] of listed) for (const p of refs) visit(h, p); };
  assert.equal(t.removeUnlisted(each), 2);
  assert.deepEqual(t.entries().map((e) => formatCidr(e.cidr)).sort(), ['10.0.1.0/24', '10.0.2.0/24', 'fd00:a::/64']);
  assert.equal(t.removeUnlisted(each), 0, 'nothing stray: nothing removed');
  assert.equal(t.size, 3);
});
