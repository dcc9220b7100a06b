// Two sans-I/O Devices wired back to back through plain byte arrays, with a fake clock.
import { Device, sameEndpoint, type Action, type Endpoint, type Peer } from '../../src/wireguard/index.js';
import { generatePrivateKey, type X25519PrivateKey } from '../../src/crypto/index.js';

export const EP_A: Endpoint = { address: '192.0.2.1', port: 51871 };
export const EP_B: Endpoint = { address: '192.0.2.2', port: 51871 };

/** Minimal IPv4 packet (protocol 253, experimental) carrying payload; length fields consistent. */
export function ipv4Packet(payload: Uint8Array | string, src = [10, 0, 0, 1], dst = [10, 0, 0, 2]): Uint8Array {
  const body = typeof payload === 'string' ? new Uint8Array(Buffer.from(payload)) : payload;
  const p = new Uint8Array(20 + body.length);
  p[0] = 0x45;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[8] = 64;
  p[9] = 253;
  p.set(src, 12);
  p.set(dst, 16);
  p.set(body, 20);
  return p;
}

export type Side = 'a' | 'b';

function compareKeys(x: X25519PrivateKey, y: X25519PrivateKey): number {
  return Buffer.compare(Buffer.from(x.publicKey), Buffer.from(y.publicKey));
}

export class Pair {
  now = 1_700_000_000_000;
  readonly a: Device;
  readonly b: Device;
  /** B as a peer of A, and A as a peer of B. */
  readonly peerB: Peer;
  readonly peerA: Peer;
  /** Inner packets written to each side's tunnel. */
  readonly tunnel: Record<Side, Uint8Array[]> = { a: [], b: [] };
  /** Every datagram put on the wire, in order (side = sender). */
  readonly wire: { from: Side; datagram: Uint8Array }[] = [];
  readonly keylog: string[] = [];
  /** Return false to lose a datagram in flight. */
  filter: (from: Side, datagram: Uint8Array) => boolean = () => true;
  /**
   * Where each side really is: a datagram reaches the other side only when sent to its address
   * (a stale endpoint loses it), and arrives from the sender's address.
   */
  readonly at: Record<Side, Endpoint> = { a: EP_A, b: EP_B };
  /** Datagrams sent to an address where no side is. */
  readonly lost: { from: Side; endpoint: Endpoint; datagram: Uint8Array }[] = [];

  /** greater: which side's public key compares greater (crossing initiations break ties by it). */
  constructor(opts: { psk?: Uint8Array; keepaliveA?: number; endpointOnB?: boolean; keylog?: boolean; greater?: Side } = {}) {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    let [ka, kb] = [generatePrivateKey(), generatePrivateKey()];
    if (opts.greater && (compareKeys(ka, kb) > 0) !== (opts.greater === 'a')) [ka, kb] = [kb, ka];
    this.a = new Device({ privateKey: ka.raw, random, keylog: opts.keylog });
    this.b = new Device({ privateKey: kb.raw, random, keylog: opts.keylog });
    this.peerB = this.a.addPeer({ publicKey: this.b.publicKey, endpoint: EP_B, presharedKey: opts.psk, persistentKeepalive: opts.keepaliveA });
    this.peerA = this.b.addPeer({ publicKey: this.a.publicKey, endpoint: opts.endpointOnB === false ? null : EP_A, presharedKey: opts.psk });
  }

  device(side: Side): Device {
    return side === 'a' ? this.a : this.b;
  }

  /** Performs actions produced by `side`, delivering datagrams (and their consequences) at once. */
  run(side: Side, actions: readonly Action[]): void {
    const queue: [Side, Action][] = actions.map((a) => [side, a]);
    while (queue.length) {
      const [from, action] = queue.shift()!;
      if (action.kind === 'tunnel') this.tunnel[from].push(Uint8Array.from(action.packet));
      if (action.kind === 'keylog') this.keylog.push(action.text);
      if (action.kind !== 'network') continue;
      this.wire.push({ from, datagram: action.datagram });
      if (!this.filter(from, action.datagram)) continue;
      const to: Side = from === 'a' ? 'b' : 'a';
      if (!sameEndpoint(action.endpoint, this.at[to])) {
        this.lost.push({ from, endpoint: action.endpoint, datagram: action.datagram });
        continue;
      }
      for (const next of this.device(to).decapsulate(action.datagram, this.at[from], this.now)) queue.push([to, next]);
    }
  }

  send(side: Side, packet: Uint8Array): void {
    const dev = this.device(side);
    this.run(side, dev.encapsulate(side === 'a' ? this.peerB : this.peerA, packet, this.now));
  }

  /** Advances the clock in `step` ms increments, ticking both devices. */
  advance(ms: number, step = 100): void {
    const end = this.now + ms;
    while (this.now < end) {
      this.now = Math.min(end, this.now + step);
      this.run('a', this.a.tick(this.now));
      this.run('b', this.b.tick(this.now));
    }
  }

  /** Datagrams of a message type sent by `from` (type 1..4), optionally since index. */
  sent(from: Side, type: number, since = 0): Uint8Array[] {
    return this.wire.slice(since).filter((w) => w.from === from && w.datagram[0] === type).map((w) => w.datagram);
  }
}

/**
 * Holds every datagram of a Pair on two FIFO links (a -> b, b -> a) until deliver() hands the
 * oldest one on: deterministic schedules with packets in flight while handshakes cross.
 */
export class Links {
  readonly inFlight: Record<Side, Uint8Array[]> = { a: [], b: [] };

  constructor(readonly pair: Pair) {
    pair.filter = (from, datagram) => { this.inFlight[from].push(datagram); return false; };
  }

  /** Delivers the oldest datagram `from` sent (what the receiver sends back is held too); false when none is in flight. */
  deliver(from: Side): boolean {
    const datagram = this.inFlight[from].shift();
    if (!datagram) return false;
    const to: Side = from === 'a' ? 'b' : 'a';
    this.pair.run(to, this.pair.device(to).decapsulate(datagram, this.pair.at[from], this.pair.now));
    return true;
  }

  /** Delivers everything in flight, the two links taking turns, until both are empty. */
  drain(): void {
    while (this.inFlight.a.length + this.inFlight.b.length > 0) {
      this.deliver('a');
      this.deliver('b');
    }
  }

  /** Back to immediate delivery (nothing may be in flight). */
  release(): void {
    this.pair.filter = () => true;
  }
}
