// Health probes and their acks as packets, for the tests of the scale bench's answering synthetic
// peers (wireguard-responder.test.ts, esp-responder.test.ts).
import assert from 'node:assert/strict';
import { IPPROTO, IpHeader, ipv4HeaderChecksumValid, parseIpHeader, transportChecksumValid } from '../../src/net/ip-packet.js';
import { HEALTH_PORT } from '../../src/agent/health-prober.js';

/** An IPv4/UDP packet from src:sport to dst:dport. */
export function udp(src: string, dst: string, sport: number, dport: number, text: string): Uint8Array {
  const payload = Buffer.from(text, 'latin1');
  const b = Buffer.alloc(28 + payload.length);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = IPPROTO.UDP;
  Buffer.from(src.split('.').map(Number)).copy(b, 12);
  Buffer.from(dst.split('.').map(Number)).copy(b, 16);
  b.writeUInt16BE(sport, 20);
  b.writeUInt16BE(dport, 22);
  b.writeUInt16BE(8 + payload.length, 24);
  payload.copy(b, 28);
  return new Uint8Array(b);
}

/** A probe from the prober at 10.0.0.1 to the synthetic node's gateway 10.100.0.1. */
export function probe(text: string): Uint8Array {
  return udp('10.0.0.1', '10.100.0.1', HEALTH_PORT, HEALTH_PORT, text);
}

/** `packet` is the ack of probe(...) with this text: valid checksums, from the probed gateway back to the prober, port to port. */
export function assertAck(packet: Uint8Array, text: string): void {
  const h = new IpHeader();
  assert.ok(parseIpHeader(packet, 0, packet.length, h));
  assert.ok(ipv4HeaderChecksumValid(packet, 0));
  assert.ok(transportChecksumValid(packet, 0, h));
  const b = Buffer.from(packet);
  assert.equal(`${b[12]}.${b[13]}.${b[14]}.${b[15]} -> ${b[16]}.${b[17]}.${b[18]}.${b[19]}`, '10.100.0.1 -> 10.0.0.1');
  assert.equal(b.readUInt16BE(20), HEALTH_PORT);
  assert.equal(b.readUInt16BE(22), HEALTH_PORT);
  assert.equal(b.toString('latin1', 28), text, 'the ack the prober matches: its sequence and send time back');
}
