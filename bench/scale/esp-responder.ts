// Synthetic IPsec peers that answer (the scale bench, issue #13): each synthetic node derives its
// tunnel keys with each real agent as an agent does (ipsec-derive.ts: the cluster's key, both
// underlay addresses, both boot ids), opens what an agent sends it with the project's ESP decoder,
// and answers a health probe with the prober's ack sealed by the project's ESP encoder, so the
// agents under test see live, healthy peers, as WireGuard's responder makes them (a silent peer
// costs an agent less: no ack to open, no probe result to record).
// Sans-I/O: callers hand it the UDP payloads (ESP in UDP) with the synthetic address they arrived
// at, and send what it returns from that address to the agent's port 4500.
import { createInboundSa, createOutboundSa, releaseSa, type InboundSa, type OutboundSa } from '../../src/esp/security-association.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import { decodeEsp, newDropCounters, type EspDropCounters } from '../../src/esp/esp-decoder.js';
import { sealEsp } from '../../src/esp/esp-encoder.js';
import { readEspSpi } from '../../src/esp/esp-packet.js';
import { classifyUdpEncap, ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';
import { deriveTunnelTransforms, type TunnelEnd } from '../../src/keys/ipsec-derive.js';
import { parseKeyFile, type IpsecKey } from '../../src/keys/ipsec-keyfile.js';
import type { Endpoint } from '../../src/wireguard/endpoint.js';
import type { SyntheticKey } from './synthetic-nodes.js';
import { newResponderCounts, probeAck, type Outgoing, type ResponderCounts, type SyntheticResponder } from './synthetic-responder.js';

/** A real agent: its underlay address and the boot id it publishes. */
export interface RealIpsecAgent {
  address: string;
  bootId: string;
}

/** One direction pair with one agent under one key: what the agent sends us, what we send it. */
interface Tunnel {
  in: InboundSa;
  out: OutboundSa;
}

interface Synthetic {
  name: string;
  end: TunnelEnd;
  /** By `${agent address}/${spi}`, made at the first packet under that key. */
  tunnels: Map<string, Tunnel>;
}

export class EspResponder implements SyntheticResponder {
  private readonly peers = new Map<string, Synthetic>();
  private readonly agents = new Map<string, TunnelEnd>();
  private keys = new Map<number, IpsecKey>();
  readonly counts: ResponderCounts = newResponderCounts();
  /** The ESP decoder's drops by reason (summed into counts.drops). */
  readonly espDrops: EspDropCounters = newDropCounters();

  /** keyFile: the cluster's IPsec key file (its secret's text); answer false: count only. */
  constructor(agents: readonly RealIpsecAgent[], keyFile: string, private readonly answer = true) {
    if (agents.length === 0) throw new RangeError('a responder needs at least one real agent');
    for (const a of agents) this.agents.set(a.address, { ip: a.address, bootId: a.bootId });
    this.setKeys(keyFile);
  }

  get size(): number {
    return this.peers.size;
  }

  /** The cluster's keys from now on (after a rotation: the file with the new key). Throws on a bad file. */
  setKeys(keyFile: string): number[] {
    const parsed = parseKeyFile(keyFile);
    if (!parsed.ok) throw parsed.error;
    this.keys = new Map(parsed.value.map((k) => [k.spi, k]));
    return [...this.keys.keys()];
  }

  /** The synthetic node holds this boot id from now on: a new node, or a reboot (new keys with every agent). */
  set(key: SyntheticKey): void {
    if (!('bootId' in key)) throw new TypeError(`${key.name}: an IPsec peer needs its boot id`);
    const old = this.peers.get(key.address);
    if (old) for (const t of old.tunnels.values()) { releaseSa(t.in); releaseSa(t.out); }
    this.peers.set(key.address, { name: key.name, end: { ip: key.address, bootId: key.bootId }, tunnels: new Map() });
  }

  receive(local: string, datagram: Uint8Array, source: Endpoint, now: number): Outgoing[] {
    this.counts.datagramsIn++;
    (this.counts.bySource[source.address] ??= { initiations: 0, transport: 0 }).transport++;
    const out: Outgoing[] = [];
    if (!this.answer) return out;
    const p = this.peers.get(local);
    if (!p) {
      this.counts.unknownAddress++;
      return out;
    }
    if (classifyUdpEncap(datagram) !== 'esp') return this.dropped(out);
    const tunnel = this.tunnel(p, source.address, readEspSpi(datagram), now);
    if (!tunnel) return this.dropped(out);
    const opened = decodeEsp(tunnel.in, datagram, now, this.espDrops);
    if (!opened.ok) return this.dropped(out);
    const ack = probeAck(opened.inner, p.name);
    if (!ack) {
      this.counts.otherPackets++;
      return out;
    }
    // No durable store behind these numbers: a synthetic node that reboots has new keys anyway.
    const due = tunnel.out.sequence.persistDue();
    if (due !== undefined) tunnel.out.sequence.persisted(due);
    const sealed = sealEsp(tunnel.out, ack, now);
    if (typeof sealed === 'string') return this.dropped(out);
    this.counts.probesAnswered++;
    this.counts.datagramsOut++;
    out.push({ from: local, to: { address: source.address, port: ESP_IN_UDP_PORT }, datagram: sealed });
    return out;
  }

  /** No timers: an ESP peer only answers. */
  tick(): Outgoing[] {
    return [];
  }

  /** The SAs with agent `agentIP` under key `spi`, derived at their first packet; none for an unknown agent or key. */
  private tunnel(p: Synthetic, agentIP: string, spi: number, now: number): Tunnel | undefined {
    const id = `${agentIP}/${spi}`;
    let t = p.tunnels.get(id);
    if (t) return t;
    const agent = this.agents.get(agentIP);
    const key = this.keys.get(spi);
    if (!agent || !key) return undefined;
    const derived = deriveTunnelTransforms(key, p.end, agent); // as the agent derives them, from this end
    t = {
      in: createInboundSa({ spi, src: agentIP, dst: p.end.ip, transform: derived.in, nowMs: now }),
      out: createOutboundSa({ spi, src: p.end.ip, dst: agentIP, transform: derived.out, nowMs: now, sequence: new OutboundSequence(0) }),
    };
    p.tunnels.set(id, t);
    return t;
  }

  private dropped(out: Outgoing[]): Outgoing[] {
    this.counts.drops++;
    return out;
  }
}
