// Node-to-node health probes through the tunnel: every interval each agent sends a small UDP probe
// from its pod gateway address to every peer's, and answers the probes it gets. Probes travel the
// same encrypted path as pod traffic, so they prove the path (and keep ESP/WireGuard visible on
// the wire even with no pod traffic, as Cilium's health checks do).
import { createSocket, type Socket } from 'node:dgram';
import type { Health } from './health.js';
import { forgetUnmarked } from '../util/forget-unmarked.js';

export const HEALTH_PORT = 4240;
/**
 * Probes sent per interval at most: in a large cluster each peer is probed every
 * ceil(peers / MAX) intervals instead (5,000 peers at the 2 s default: every 50 s), so probing costs
 * the same at any size.
 */
export const MAX_PROBES_PER_INTERVAL = 200;
/** The unreachable peers a status message names (the rest are counted). */
const NAMED_IN_STATUS = 10;

export interface PeerHealth {
  node: string;
  address: string;
  sent: number;
  acked: number;
  lastAckMs: number | null;
  rttMs: number | null;
}

/** A peer to probe at its pod gateway; an external one (a Peer object, no agent there to answer) is not probed. */
export interface ProbeTarget {
  name: string;
  podGateway: string;
  external?: unknown;
}

/**
 * A probed peer, and the last setPeers that wanted it (forget-unmarked.ts): kept from one pass to
 * the next, so a pass makes no table of its targets. The mark is private: a status answer (JSON)
 * carries the PeerHealth fields only.
 */
class ProbedPeer implements PeerHealth {
  readonly node: string;
  readonly address: string;
  sent = 0;
  acked = 0;
  lastAckMs: number | null = null;
  rttMs: number | null = null;
  #pass: number;

  constructor(node: string, address: string, pass: number) {
    this.node = node;
    this.address = address;
    this.#pass = pass;
  }

  get pass(): number { return this.#pass; }
  set pass(pass: number) { this.#pass = pass; }
}

export class HealthProber {
  private socket?: Socket;
  private timer?: NodeJS.Timeout;
  /**
   * The peers probed, by address (an ack names its sender by address only). One map: the name is in
   * the entry (a map by name besides was ~45 B a peer).
   */
  private readonly byAddress = new Map<string, ProbedPeer>();
  /** Round-robin position: the peers probed next. */
  private cursor: IterableIterator<ProbedPeer> = this.byAddress.values();
  private seq = 0;
  private passes = 0;
  readonly startedAt = Date.now();

  constructor(private readonly nodeName: string, private readonly localAddress: string, private readonly intervalMs: number) {}

  async start(): Promise<void> {
    const s = createSocket({ type: this.localAddress.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    s.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(HEALTH_PORT, this.localAddress, () => { s.off('error', reject); resolve(); });
    });
    this.socket = s;
    this.timer = setInterval(() => this.probeAll(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * The peers to probe (every pass hands its peers as they are): an unchanged set costs a lookup per
   * peer and allocates nothing, where a map of the targets made each pass was ~0.3 MB of garbage at
   * 5,000 peers.
   */
  setPeers(peers: readonly ProbeTarget[]): void {
    const pass = ++this.passes;
    let unmatched: ProbeTarget[] | undefined; // new, moved, or at an address another peer's entry holds
    for (let i = 0; i < peers.length; i++) { // indexed: an iterator's results were garbage too
      const p = peers[i]!;
      if (p.external) continue;
      const had = this.byAddress.get(p.podGateway);
      if (had && had.node === p.name) had.pass = pass;
      else (unmatched ??= []).push(p);
    }
    if (unmatched) for (const p of unmatched) {
      // An entry this pass already wants is kept: another peer's that still has this address (a
      // forged podGateway: one address is one probe target, and its acks cannot be told apart anyway).
      if (this.byAddress.get(p.podGateway)?.pass === pass) continue;
      this.byAddress.set(p.podGateway, new ProbedPeer(p.name, p.podGateway, pass));
    }
    forgetUnmarked(this.byAddress, pass); // gone, or moved (a Map's iteration survives deletes)
  }

  /** How many intervals pass between two probes of the same peer. */
  private get rounds(): number {
    return Math.max(1, Math.ceil(this.byAddress.size / MAX_PROBES_PER_INTERVAL));
  }

  private probeAll(): void {
    const now = Date.now();
    const n = Math.min(this.byAddress.size, MAX_PROBES_PER_INTERVAL);
    for (let i = 0; i < n; i++) {
      let next = this.cursor.next();
      if (next.done) { this.cursor = this.byAddress.values(); next = this.cursor.next(); }
      if (next.done) return;
      const p = next.value;
      const msg = Buffer.from(`veil-probe ${this.nodeName} ${++this.seq} ${now}`);
      p.sent++;
      this.socket?.send(msg, HEALTH_PORT, p.address, () => undefined);
    }
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    const text = msg.toString('latin1', 0, Math.min(msg.length, 200));
    const parts = text.split(' ');
    if (parts[0] === 'veil-probe' && parts.length === 4) {
      this.socket?.send(Buffer.from(`veil-ack ${this.nodeName} ${parts[2]} ${parts[3]}`), port, address, () => undefined);
    } else if (parts[0] === 'veil-ack' && parts.length === 4) {
      const p = this.byAddress.get(address);
      const sentAt = Number(parts[3]);
      if (!p || !Number.isFinite(sentAt)) return;
      p.acked++;
      p.lastAckMs = Date.now();
      p.rttMs = p.lastAckMs - sentAt;
    }
  }

  /**
   * Sets the agent's 'node-connectivity' check from the probes: the peers that did not answer
   * recently (after a start-up grace period), a few named and the rest counted. Every publish check
   * asks (every 2 s): it makes no list of the peers (two arrays of every peer were ~0.2 MB each time at 5,000).
   */
  reportTo(health: Health, now = Date.now()): void {
    const limit = 3 * this.intervalMs * this.rounds + 5000;
    let down = 0;
    const named: string[] = [];
    if (now - this.startedAt >= limit) {
      this.byAddress.forEach((p) => {
        if (p.lastAckMs !== null && now - p.lastAckMs <= limit) return;
        if (down++ < NAMED_IN_STATUS) named.push(p.node);
      });
    }
    const more = down > NAMED_IN_STATUS ? ` and ${down - NAMED_IN_STATUS} more` : '';
    if (down) health.set('node-connectivity', 'Degraded', `no probe answer through the tunnel from ${named.join(', ')}${more}`);
    else health.ok('node-connectivity');
  }

  list(): PeerHealth[] {
    return [...this.byAddress.values()];
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket?.close();
  }
}
