// A WireGuard engine's TUN device and UDP socket as stand-ins that only hand packets over (no
// kernel): what the in-process benches and tests drive an engine through.
import type { PacketBatch } from '../src/datapath/packet-batch.js';

/** A datagram on the stand-in wire: from or to `address` (4 bytes for IPv4, 16 for IPv6):`port`. */
export interface Datagram { bytes: Uint8Array; address: Uint8Array; port: number }

/** The TUN device: hands the engine the packets queued in `reads`, counts what it writes. */
export class StandInTun {
  readonly reads: Uint8Array[] = [];
  written = 0;
  readBatch(b: PacketBatch): number {
    const p = this.reads.shift();
    if (!p) return 0;
    const off = b.slotOffset(0);
    b.buf.set(p, off);
    b.set(0, off, p.length);
    b.count = 1;
    return 1;
  }
  writeBatch(_b: PacketBatch, n: number): number { this.written += n; return n; }
  counters(): object { return {}; }
}

/** The UDP socket: hands the engine the datagrams in `inbox`, keeps what it sends in `outbox`. */
export class StandInUdp {
  readonly gro = false;
  readonly inbox: Datagram[] = [];
  outbox: Datagram[] = [];
  constructor(readonly port: number) {}
  recvBatch(b: PacketBatch): number {
    const d = this.inbox.shift();
    if (!d) return 0;
    const off = b.slotOffset(0);
    b.buf.set(d.bytes, off);
    b.set(0, off, d.bytes.length);
    b.count = 1;
    b.setPeer(0, d.address, d.address.length === 4 ? 4 : 6, d.port);
    return 1;
  }
  sendBatch(b: PacketBatch, n: number): number {
    for (let i = 0; i < n; i++) {
      const at = 16 * i, end = at + (b.families[i] === 6 ? 16 : 4);
      this.outbox.push({ bytes: b.buf.slice(b.offs[i]!, b.offs[i]! + b.lens[i]!), address: b.addrs.slice(at, end), port: b.ports[i]! });
    }
    return n;
  }
  sendTo(data: Uint8Array, address: Uint8Array, port: number): boolean {
    this.outbox.push({ bytes: Uint8Array.from(data), address: Uint8Array.from(address), port });
    return true;
  }
  counters(): object { return {}; }
}
