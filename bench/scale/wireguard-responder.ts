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
import type { SyntheticKey } from './synthetic-nodes.js';
import { newResponderCounts, probeAck, type Outgoing, type ResponderCounts, type SyntheticResponder } from './synthetic-responder.js';

/** A real agent: its static public key and its WireGuard endpoint (internalIP:WG_PORT). */
export interface RealAgent {
  publicKey: Uint8Array;
  endpoint: Endpoint;
}

interface Synthetic {
  name: string;
  device: Device;
}

export class WireGuardResponder implements SyntheticResponder {
  private readonly peers = new Map<string, Synthetic>();
  readonly counts: ResponderCounts = newResponderCounts();

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
   * The synthetic node holds its private key (raw 32 bytes) from now on: a new peer, or a key
   * change (its sessions with the old key end, as a restarted agent's would).
   */
  set(key: SyntheticKey): void {
    if (!('privateKey' in key)) throw new TypeError(`${key.name}: a WireGuard peer needs its private key`);
    const device = new Device({ privateKey: key.privateKey, wallClockOffsetMs: this.wallClockOffsetMs, handshakeLoadThreshold: Infinity });
    for (const a of this.agents) device.addPeer({ publicKey: a.publicKey, endpoint: a.endpoint });
    this.peers.set(key.address, { name: key.name, device });
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
