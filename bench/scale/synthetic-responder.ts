// What the scale bench's answering synthetic peers share, whichever protocol they speak
// (wireguard-responder.ts, esp-responder.ts): what they send, what they count, and the health
// probe's ack they answer with. Each responder is sans-I/O: responder-process.ts is its shell.
import { HEALTH_PORT, ackOfProbe } from '../../src/agent/health-prober.js';
import { IPPROTO, internetChecksum, pseudoHeaderSum, writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';
import type { Endpoint } from '../../src/wireguard/endpoint.js';
import type { SyntheticKey } from './synthetic-nodes.js';

/** A datagram to send from the synthetic address `from` to `to`. */
export interface Outgoing {
  from: string;
  to: Endpoint;
  datagram: Uint8Array;
}

/** What the responder did (summed over every synthetic peer, key changes included). */
export interface ResponderCounts {
  datagramsIn: number;
  /** Handshake initiations and transport datagrams received, by sender address (answering or not). */
  bySource: Record<string, { initiations: number; transport: number }>;
  datagramsOut: number;
  /** Handshake responses sent (one per initiation answered). */
  handshakeResponses: number;
  /** Handshake initiations the synthetic peers sent themselves (a session of theirs expired). */
  handshakeInitiations: number;
  probesAnswered: number;
  /** Decrypted packets that were not a health probe (dropped). */
  otherPackets: number;
  /** Datagrams at an address no synthetic peer holds. */
  unknownAddress: number;
  /** Datagrams the core dropped (bad MACs, replays, unknown indexes, ...). */
  drops: number;
}

export function newResponderCounts(): ResponderCounts {
  return { datagramsIn: 0, bySource: {}, datagramsOut: 0, handshakeResponses: 0, handshakeInitiations: 0, probesAnswered: 0, otherPackets: 0, unknownAddress: 0, drops: 0 };
}

/** The synthetic peers of one protocol, answering the real agents. */
export interface SyntheticResponder {
  readonly counts: ResponderCounts;
  readonly size: number;
  /** The synthetic node holds this identity from now on (a new node, or a new key or boot id). */
  set(key: SyntheticKey): void;
  /** A datagram from `source` arrived at the synthetic address `local`: what to send back. */
  receive(local: string, datagram: Uint8Array, source: Endpoint, now: number): Outgoing[];
  /** The synthetic peers' timers: what to send. */
  tick(now: number): Outgoing[];
}

const IPV4_HEADER = 20;
const UDP_HEADER = 8;

/**
 * The ack a node's prober (health-prober.ts) sends for an IPv4 probe packet: `veil-ack <node> <seq>
 * <sent>` from the probed address and port back to the prober's, as a whole IPv4/UDP packet with
 * its checksums; null for anything that is not a probe.
 */
export function probeAck(packet: Uint8Array, node: string): Uint8Array | null {
  if (packet.length < IPV4_HEADER + UDP_HEADER || packet[0] !== 0x45 || packet[9] !== IPPROTO.UDP) return null;
  const b = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  if ((b.readUInt16BE(6) & 0x3fff) !== 0) return null; // a fragment
  const total = b.readUInt16BE(2);
  if (total > b.length || b.readUInt16BE(IPV4_HEADER + 2) !== HEALTH_PORT) return null;
  const ack = ackOfProbe(b.toString('latin1', IPV4_HEADER + UDP_HEADER, total).split(' '), node);
  if (ack === null) return null;
  const payload = Buffer.from(ack, 'latin1');
  const len = IPV4_HEADER + UDP_HEADER + payload.length;
  const r = Buffer.alloc(len);
  r[0] = 0x45;
  r.writeUInt16BE(len, 2);
  r[8] = 64; // TTL
  r[9] = IPPROTO.UDP;
  b.copy(r, 12, 16, 20); // source: the probed address
  b.copy(r, 16, 12, 16); // destination: the prober's
  writeIpv4HeaderChecksum(r, 0);
  r.writeUInt16BE(HEALTH_PORT, IPV4_HEADER);
  r.writeUInt16BE(b.readUInt16BE(IPV4_HEADER), IPV4_HEADER + 2);
  r.writeUInt16BE(UDP_HEADER + payload.length, IPV4_HEADER + 4);
  payload.copy(r, IPV4_HEADER + UDP_HEADER);
  const sum = internetChecksum(r, IPV4_HEADER, UDP_HEADER + payload.length, pseudoHeaderSum(r, 0, IPPROTO.UDP, UDP_HEADER + payload.length));
  r.writeUInt16BE(sum === 0 ? 0xffff : sum, IPV4_HEADER + 6);
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}
