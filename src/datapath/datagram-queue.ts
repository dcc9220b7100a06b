// The WireGuard core's own datagrams (keepalives, initiations, responses, cookie replies), queued
// while one engine entry point runs and sent together with one sendmmsg at its end. A timer tick
// fires every peer timer due within its TIMER_SLACK_MS step: at 5,000 peers ~10 keepalives and
// initiations a tick, each one sendto before (docs/performance-log.md, session 34). Small datagrams
// only: a larger one (a staged packet released by a handshake) sends what is queued, then itself,
// so the order on the wire is the order the core asked for.
import { PacketBatch } from './packet-batch.js';
import type { UdpSocket } from './udp-socket.js';
import type { Peer } from '../wireguard/peer.js';

/** Datagrams queued before a send: more than a tick fires at 5,000 peers (~10-15). */
const CAPACITY = 64;
/** Bytes a queued datagram may have: a handshake initiation is 148, a keepalive 32. */
const SLOT = 256;

export class DatagramQueue {
  private readonly batch = new PacketBatch({ capacity: CAPACITY, slotSize: SLOT });
  /** The peer each queued datagram counts for (null: not a transport datagram of a known peer). */
  private readonly peers: (Peer | null)[] = new Array(CAPACITY).fill(null);
  /** 1 where the queued datagram is a transport one (counted as a packet sent). */
  private readonly transport = new Uint8Array(CAPACITY);
  private count = 0;

  /**
   * @param sentTransport called for each transport datagram the kernel took (the engine's counters)
   * @param failed called with how many queued datagrams it did not take
   */
  constructor(private readonly udp: UdpSocket, private readonly sentTransport: (peer: Peer | null) => void, private readonly failed: (n: number) => void) {}

  /**
   * Queues `datagram` to addr:port (addr as the socket takes it: 4 or 16 bytes, copied now);
   * `transportOf` is the peer to count it for when it is a transport datagram, else undefined.
   */
  add(datagram: Uint8Array, addr: Uint8Array, port: number, transportOf: Peer | null | undefined): void {
    if (datagram.length > SLOT) {
      this.flush();
      if (!this.udp.sendTo(datagram, addr, port)) this.failed(1);
      else if (transportOf !== undefined) this.sentTransport(transportOf);
      return;
    }
    if (this.count === CAPACITY) this.flush();
    const b = this.batch, i = this.count++;
    const off = i * SLOT;
    b.buf.set(datagram, off);
    b.offs[i] = off;
    b.lens[i] = datagram.length;
    b.setPeer(i, addr, addr.length === 4 ? 4 : 6, port);
    this.transport[i] = transportOf === undefined ? 0 : 1;
    this.peers[i] = transportOf ?? null;
  }

  /** Sends what is queued, in one sendmmsg (one a CAPACITY). */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    const transport = this.transport;
    // The kernel takes them in order; one it refuses (no route to a spoofed source) is skipped and
    // counted, the rest still go. Which ones it took is not told: the count goes to the first ones.
    const sent = this.udp.sendBatch(this.batch, n);
    for (let i = 0; i < n; i++) {
      if (i < sent && transport[i] === 1) this.sentTransport(this.peers[i]);
      this.peers[i] = null;
    }
    if (sent < n) this.failed(n - sent);
  }
}
