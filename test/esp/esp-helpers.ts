// Test helpers: inner packets, SA pairs, pcap files with hand-built Ethernet/IPv4/UDP headers.
import { createOutboundSa, createInboundSa, type InboundSa, type OutboundSa } from '../../src/esp/security-association.js';
import { packTransforms, type EspTransform, type PackedTransform } from '../../src/esp/esp-transform.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';

export function checksum(b: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const ip4 = (s: string): number[] => s.split('.').map(Number);

export function ipv4Header(src: string, dst: string, protocol: number, payloadLength: number, id = 1): Uint8Array {
  const h = new Uint8Array(20);
  const v = new DataView(h.buffer);
  h[0] = 0x45;
  v.setUint16(2, 20 + payloadLength);
  v.setUint16(4, id);
  h[8] = 64;
  h[9] = protocol;
  h.set(ip4(src), 12);
  h.set(ip4(dst), 16);
  v.setUint16(10, checksum(h));
  return h;
}

/** An IPv4 ICMP echo request carrying `data`. */
export function icmpEcho(src: string, dst: string, data: string | Uint8Array, seq = 1): Uint8Array {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const icmp = new Uint8Array(8 + body.length);
  icmp[0] = 8;
  new DataView(icmp.buffer).setUint16(4, 0x1234);
  new DataView(icmp.buffer).setUint16(6, seq);
  icmp.set(body, 8);
  new DataView(icmp.buffer).setUint16(2, checksum(icmp));
  return Buffer.concat([ipv4Header(src, dst, 1, icmp.length, seq), icmp]);
}

/** A minimal IPv6 packet (next header 59, no next header) with `data`. */
export function ipv6Packet(data: Uint8Array): Uint8Array {
  const p = new Uint8Array(40 + data.length);
  p[0] = 0x60;
  new DataView(p.buffer).setUint16(4, data.length);
  p[6] = 59;
  p[7] = 64;
  p[23] = 1;
  p[39] = 2;
  p.set(data, 40);
  return p;
}

export interface SaPair {
  out: OutboundSa;
  in: InboundSa;
}

/** An outbound SA whose sequence reservation is persisted at once, and its matching inbound SA. */
export function saPair(transform: EspTransform, spi = 3, src = '10.0.0.1', dst = '10.0.0.2', persistedMark = 0): SaPair {
  const out = createOutboundSa({ spi, src, dst, transform, nowMs: 0, sequence: readySequence(persistedMark) });
  return { out, in: createInboundSa({ spi, src, dst, transform, nowMs: 0 }) };
}

/** A sequence whose first block is already "persisted" (tests only). */
export function readySequence(persistedMark = 0): OutboundSequence {
  const s = new OutboundSequence(persistedMark);
  s.persisted(s.persistDue()!);
  return s;
}

/** The transform packed, as peer specs carry keys. */
export function packed(t: EspTransform): PackedTransform {
  return packTransforms([t])[0]!;
}

export function gcm(keyBytes = 16, icvLength: 12 | 16 = 16): EspTransform {
  return {
    kind: 'aead', name: 'rfc4106(gcm(aes))', key: Uint8Array.from({ length: keyBytes }, (_, i) => i + 1),
    salt: Uint8Array.of(0xca, 0xfe, 0xba, 0xbe), icvLength,
  };
}

export function cbc(auth: 'hmac(sha256)' | 'hmac(sha512)' = 'hmac(sha256)', encBytes = 16): EspTransform {
  return {
    kind: 'authenc', auth, authKey: Uint8Array.from({ length: auth === 'hmac(sha256)' ? 32 : 64 }, (_, i) => 0x40 + i),
    enc: 'cbc(aes)', encKey: Uint8Array.from({ length: encBytes }, (_, i) => 0x80 + i), icvLength: auth === 'hmac(sha256)' ? 12 : 32,
  };
}

/** A pcap (Ethernet) of IPv4/UDP ESP-in-UDP datagrams (port 4500 both ends) with the given payloads. */
export function espInUdpPcap(src: string, dst: string, payloads: Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  const global = Buffer.alloc(24);
  global.writeUInt32LE(0xa1b2c3d4, 0);
  global.writeUInt16LE(2, 4);
  global.writeUInt16LE(4, 6);
  global.writeUInt32LE(65535, 16);
  global.writeUInt32LE(1, 20); // LINKTYPE_ETHERNET
  parts.push(global);
  payloads.forEach((payload, i) => {
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(ESP_IN_UDP_PORT, 0);
    udp.writeUInt16BE(ESP_IN_UDP_PORT, 2);
    udp.writeUInt16BE(8 + payload.length, 4); // checksum 0: allowed for UDP over IPv4
    const eth = Buffer.from('02000000000202000000000108 00'.replace(/ /g, ''), 'hex');
    const frame = Buffer.concat([eth, ipv4Header(src, dst, 17, 8 + payload.length, i + 1), udp, payload]);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1700000000 + i, 0);
    rec.writeUInt32LE(frame.length, 8);
    rec.writeUInt32LE(frame.length, 12);
    parts.push(rec, frame);
  });
  return Buffer.concat(parts);
}
