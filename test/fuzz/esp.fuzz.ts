// ESP: what arrives on UDP port 4500 (ESP in UDP, RFC 3948) through the real decoder with live SAs
// of every transform veil offers. Genuine packets round-trip (encode -> decode gives the inner
// packet back); random bytes and genuine packets edited, cut, extended or replayed never decode,
// always count a known drop reason, and never stop the next genuine packet from decoding.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ESP_DROP_REASONS, newDropCounters } from '../../src/esp/esp-decoder.js';
import { sealEsp } from '../../src/esp/esp-encoder.js';
import type { OutboundSa } from '../../src/esp/security-association.js';
import { InboundSaTable } from '../../src/esp/security-association.js';
import { classifyUdpEncap, decodeEspInUdp } from '../../src/esp/udp-encap.js';
import { cbc, gcm, ipv6Packet, saPair } from '../esp/esp-helpers.js';
import { icmpEcho } from '../esp/esp-helpers.js';
import { harness, mutated } from './harness.js';

const reasons = new Set<string>(ESP_DROP_REASONS);

/** An outbound SA's next packet, persisting another sequence block when the reserved one is used up. */
function seal(sa: OutboundSa, inner: Uint8Array): Uint8Array {
  let r = sealEsp(sa, inner, 0);
  if (r === 'sequence-not-reserved') {
    sa.sequence.persisted(sa.sequence.persistDue()!);
    r = sealEsp(sa, inner, 0);
  }
  assert.ok(typeof r !== 'string', `seal failed: ${String(r)}`);
  return r;
}

/** IPv4 echo requests and IPv6 packets of any size (the inner packets ESP carries). */
export const innerIpPacket = fc.oneof(
  fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 0xffff })).map(([data, seq]) => Uint8Array.from(icmpEcho('10.1.0.5', '10.2.0.7', data, seq))),
  fc.uint8Array({ maxLength: 300 }).map((d) => ipv6Packet(d)),
);

let lastDrops = newDropCounters();

export const espDecode = harness({
  name: 'esp-decode',
  target: 'src/esp/ (classifyUdpEncap, decodeEspInUdp, decodeEsp) with AES-GCM and CBC+HMAC SAs',
  runs: 300_000,
  ciRuns: 8_000,
  property: () => {
    const transforms = [gcm(16, 16), gcm(32, 12), cbc('hmac(sha256)'), cbc('hmac(sha512)', 32)];
    const table = new InboundSaTable();
    const pairs = transforms.map((t, i) => {
      const p = saPair(t, i + 1, `10.0.0.${i + 1}`, '10.0.0.100');
      table.add(p.in);
      return p;
    });
    const drops = newDropCounters();
    lastDrops = drops;
    // Genuine packets, already delivered once: as samples they are replays or, edited, forgeries.
    const samples: Uint8Array[] = [];
    pairs.forEach((p, i) => {
      for (let k = 0; k < 8; k++) {
        const packet = seal(p.out, icmpEcho('10.1.0.5', '10.2.0.7', `sample ${k}`, k + 1));
        assert.equal(decodeEspInUdp(table, `10.0.0.${i + 1}`, packet, 0, drops).ok, true);
        samples.push(packet);
      }
    });
    samples.push(Uint8Array.of(0xff), Uint8Array.of(0, 0, 0, 0, 1, 2, 3)); // a NAT keepalive, an IKE marker
    return fc.property(
      mutated(samples, 120), fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5 })), fc.nat(transforms.length - 1), innerIpPacket,
      (hostile, source, which, inner) => {
        // 0: from the node whose SA the SPI names (the SPI is 1..4 in the samples), so the crypto runs.
        const from = source || (hostile.length >= 4 ? hostile[3]! : 5);
        assert.ok(['esp', 'ike', 'keepalive', 'truncated'].includes(classifyUdpEncap(hostile)));
        const before = Object.values(drops).reduce((a, b) => a + b, 0);
        const r = decodeEspInUdp(table, `10.0.0.${from}`, hostile, 0, drops);
        assert.equal(r.ok, false, 'a hostile ESP packet decoded');
        if (!r.ok) assert.ok(reasons.has(r.reason), `drop reason ${r.reason}`);
        assert.equal(Object.values(drops).reduce((a, b) => a + b, 0), before + 1, 'the drop was counted once');
        // Round trip, and the SA still works after the hostile packet.
        const packet = seal(pairs[which]!.out, inner);
        const back = decodeEspInUdp(table, `10.0.0.${which + 1}`, packet, 0, drops);
        assert.ok(back.ok, `a genuine packet was refused: ${back.ok ? '' : back.reason}`);
        assert.deepEqual(Buffer.from(back.inner), Buffer.from(inner));
        assert.equal(back.nextHeader, inner[0]! >> 4 === 4 ? 4 : 41);
      },
    );
  },
  report: () => `drops: ${Object.entries(lastDrops).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(', ')}`,
});

export const harnesses = [espDecode];
