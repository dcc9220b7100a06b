// Node-to-node health probes through the tunnel: every interval each agent sends a small UDP probe
// from its pod gateway address to every peer's, and answers the probes it gets. Probes travel the
// same encrypted path as pod traffic, so they prove the path (and keep ESP/WireGuard visible on
// the wire even with no pod traffic, as Cilium's health checks do).
import { createSocket, type Socket } from 'node:dgram';
import type { Health } from './health.js';

export const HEALTH_PORT = 4240;

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
  private readonly peers = new Map<string, PeerHealth>();
  private seq = 0;
  readonly startedAt = Date.now();

  constructor(private readonly nodeName: string, private readonly localAddress: string, private readonly intervalMs: number) {}

  async start(): Promise<void> {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
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
    for (const name of [...this.peers.keys()]) if (!peers.has(name)) this.peers.delete(name);
    for (const [name, address] of peers) {
      const p = this.peers.get(name);
      if (!p || p.address !== address) this.peers.set(name, { node: name, address, sent: 0, acked: 0, lastAckMs: null, rttMs: null });
    }
  }

  private probeAll(): void {
    const now = Date.now();
    for (const p of this.peers.values()) {
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
      const p = [...this.peers.values()].find((x) => x.address === address);
      const sentAt = Number(parts[3]);
      if (!p || !Number.isFinite(sentAt)) return;
      p.acked++;
      p.lastAckMs = Date.now();
      p.rttMs = p.lastAckMs - sentAt;
    }
  }

  /** Peers that did not answer recently (after a start-up grace period). */
  unreachable(now = Date.now()): PeerHealth[] {
    const limit = 3 * this.intervalMs + 5000;
    if (now - this.startedAt < limit) return [];
    return [...this.peers.values()].filter((p) => p.lastAckMs === null || now - p.lastAckMs > limit);
  }

  /** Sets the agent's 'node-connectivity' check from the probes. */
  reportTo(health: Health): void {
    const down = this.unreachable();
    if (down.length) health.set('node-connectivity', 'Degraded', `no probe answer through the tunnel from ${down.map((d) => d.node).join(', ')}`);
    else health.ok('node-connectivity');
  }

  list(): PeerHealth[] {
    return [...this.peers.values()];
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket?.close();
  }
}
