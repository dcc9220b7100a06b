// Synthetic WireGuard peers that answer (the scale bench, issue #13): each synthetic node is a
// Device of the project's sans-I/O WireGuard core holding the node's own static key, with the real
// agents as its peers. It answers their handshake initiations and their health probes (decrypted,
// answered as a real agent's prober answers, encrypted back), so the agents under test see live,
// healthy peers, as in a real cluster, instead of peers whose handshakes never complete.
// Sans-I/O like the core: callers hand it datagrams with the synthetic address they arrived at,
// and send what it returns from that address (the agent's endpoint for the peer stays there).
import { Device } from '../../src/wireguard/device.js';
import type { Endpoint } from '../../src/wireguard/endpoint.js';
import type { Action } from '../../src/wireguard/actions.js';
import type { Peer } from '../../src/wireguard/peer.js';
import { MESSAGE_INITIATION_TYPE, MESSAGE_RESPONSE_TYPE, MESSAGE_TRANSPORT_TYPE } from '../../src/wireguard/constants.js';
import { HEALTH_PORT, ackOfProbe } from '../../src/agent/health-prober.js';
import { IPPROTO, internetChecksum, pseudoHeaderSum, writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';

/** A real agent: its static public key and its WireGuard endpoint (internalIP:WG_PORT). */
export interface RealAgent {
  publicKey: Uint8Array;
  endpoint: Endpoint;
}

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

interface Synthetic {
  name: string;
  device: Device;
}

const IPV4_HEADER = 20;
const UDP_HEADER = 8;

export class WireGuardResponder {
  private readonly peers = new Map<string, Synthetic>();
  readonly counts: ResponderCounts = { datagramsIn: 0, bySource: {}, datagramsOut: 0, handshakeResponses: 0, handshakeInitiations: 0, probesAnswered: 0, otherPackets: 0, unknownAddress: 0, drops: 0 };

  /**
   * agents: the real agents every synthetic peer talks to; wallClockOffsetMs: as Device takes it;
   * answer false: the peers only count what reaches them, as if nothing answered there (the bench's
   * earlier form, with counts).
   */
  constructor(private readonly agents: readonly RealAgent[], private readonly wallClockOffsetMs = 0, private readonly answer = true) {
    if (agents.length === 0) throw new RangeError('a responder needs at least one real agent');
  }

  get size(): number {
    return this.peers.size;
  }

  /**
   * The synthetic node `name` at underlay `address` holds `privateKey` (raw 32 bytes) from now on: a
   * new peer, or a key change (its sessions with the old key end, as a restarted agent's would).
   */
  set(address: string, name: string, privateKey: Uint8Array): void {
    const device = new Device({ privateKey, wallClockOffsetMs: this.wallClockOffsetMs, handshakeLoadThreshold: Infinity });
    for (const a of this.agents) device.addPeer({ publicKey: a.publicKey, endpoint: a.endpoint });
    this.peers.set(address, { name, device });
  }

  /** A datagram from `source` arrived at the synthetic address `local`: what to send back. */
  receive(local: string, datagram: Uint8Array, source: Endpoint, now: number): Outgoing[] {
    this.counts.datagramsIn++;
    const from = (this.counts.bySource[source.address] ??= { initiations: 0, transport: 0 });
    if (datagram[0] === MESSAGE_INITIATION_TYPE) from.initiations++;
    else if (datagram[0] === MESSAGE_TRANSPORT_TYPE) from.transport++;
    const p = this.peers.get(local);
    const out: Outgoing[] = [];
    if (!this.answer) return out;
    if (!p) {
      this.counts.unknownAddress++;
      return out;
    }
    this.perform(local, p, p.device.decapsulate(datagram, source, now), now, out);
    return out;
  }

  /** Every synthetic peer's timers (retransmits of its own initiations, key erasure): what to send. */
  tick(now: number): Outgoing[] {
    const out: Outgoing[] = [];
    for (const [local, p] of this.peers) this.perform(local, p, p.device.tick(now), now, out);
    return out;
  }

  private perform(local: string, p: Synthetic, actions: readonly Action[], now: number, out: Outgoing[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'network':
          if (a.datagram[0] === MESSAGE_RESPONSE_TYPE) this.counts.handshakeResponses++;
          else if (a.datagram[0] === MESSAGE_INITIATION_TYPE) this.counts.handshakeInitiations++;
          this.counts.datagramsOut++;
          out.push({ from: local, to: a.endpoint, datagram: Uint8Array.from(a.datagram) }); // a copy: the send is asynchronous
          break;
        case 'tunnel':
          this.ackProbe(local, p, a.peer, a.packet, now, out);
          break;
        case 'drop':
          this.counts.drops++;
          break;
        default:
          break;
      }
    }
  }

  /** A decrypted packet: a health probe gets its ack through the tunnel, anything else is dropped. */
  private ackProbe(local: string, p: Synthetic, peer: Peer, packet: Uint8Array, now: number, out: Outgoing[]): void {
    const ack = probeAck(packet, p.name);
    if (!ack) {
      this.counts.otherPackets++;
      return;
    }
    this.counts.probesAnswered++;
    this.perform(local, p, p.device.encapsulate(peer, ack, now), now, out);
  }
}

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
