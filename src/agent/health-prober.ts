// Node-to-node health probes through the tunnel: every interval each agent sends a small UDP probe
// from its pod gateway address to every peer's, and answers the probes it gets. Probes travel the
// same encrypted path as pod traffic, so they prove the path (and keep ESP/WireGuard visible on
// the wire even with no pod traffic, as Cilium's health checks do).
import { createSocket, type Socket } from 'node:dgram';
import type { Health } from './health.js';

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

export class HealthProber {
  private socket?: Socket;
  private timer?: NodeJS.Timeout;
  /**
   * The peers probed, by address (an ack names its sender by address only). One map: the name is in
   * the entry (a map by name besides was ~45 B a peer).
   */
  private readonly byAddress = new Map<string, PeerHealth>();
  /** Round-robin position: the peers probed next. */
  private cursor: IterableIterator<PeerHealth> = this.byAddress.values();
  private seq = 0;
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

  /** The set of peers to probe: node name -> its pod gateway address. */
  setPeers(peers: Map<string, string>): void {
    for (const p of this.byAddress.values()) if (peers.get(p.node) !== p.address) this.byAddress.delete(p.address); // gone, or moved (a Map's iteration survives deletes)
    for (const [node, address] of peers) {
      const had = this.byAddress.get(address);
      // Kept: its own entry, or another peer's that still has this address (a forged podGateway:
      // one address is one probe target, and its acks cannot be told apart anyway).
      if (had && (had.node === node || peers.get(had.node) === address)) continue;
      this.byAddress.set(address, { node, address, sent: 0, acked: 0, lastAckMs: null, rttMs: null });
    }
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

  /** Peers that did not answer recently (after a start-up grace period). */
  unreachable(now = Date.now()): PeerHealth[] {
    const limit = 3 * this.intervalMs * this.rounds + 5000;
    if (now - this.startedAt < limit) return [];
    return [...this.byAddress.values()].filter((p) => p.lastAckMs === null || now - p.lastAckMs > limit);
  }

  /** Sets the agent's 'node-connectivity' check from the probes. */
  reportTo(health: Health): void {
    const down = this.unreachable();
    const named = down.slice(0, NAMED_IN_STATUS).map((d) => d.node).join(', ');
    const more = down.length > NAMED_IN_STATUS ? ` and ${down.length - NAMED_IN_STATUS} more` : '';
    if (down.length) health.set('node-connectivity', 'Degraded', `no probe answer through the tunnel from ${named}${more}`);
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
