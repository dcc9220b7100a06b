// A batch of packets as the native layer sees it: one preallocated Buffer cut into slots, and per
// packet an (offset, length) descriptor plus, for UDP, a peer address. Allocated once per worker and
// reused for every batch, so the hot path allocates nothing. The addon holds the arrays from the
// start (batchBind), so each batch I/O call passes one handle instead of re-checking every array.
import { VeilError } from '../util/errors.js';
import { native, type NativeBatch } from '../native/addon.js';

export interface PacketBatchOptions {
  /** Descriptors (packets) per batch. */
  capacity: number;
  /** Bytes per slot: headroom + largest packet + tailroom (UDP with GRO: headroom + 65536). */
  slotSize: number;
  /** Slots in the buffer; defaults to capacity (GRO receive needs fewer, bigger slots). */
  slots?: number;
  /** Free bytes before each packet read into a slot (room for a tunnel header). */
  headroom?: number;
  /** Free bytes after each packet read into a slot (room for padding and an AEAD tag). */
  tailroom?: number;
}

export class PacketBatch {
  readonly capacity: number;
  readonly slotSize: number;
  readonly slots: number;
  readonly headroom: number;
  readonly tailroom: number;
  readonly buf: Buffer;
  /** Packet i is buf[offs[i] .. offs[i] + lens[i]); lens[i] <= 0 marks a dropped packet. */
  readonly offs: Int32Array;
  readonly lens: Int32Array;
  /** Peer of packet i: address bytes at addrs[16i ..] (4 used for IPv4), family 4 | 6, UDP port. */
  readonly addrs: Uint8Array;
  readonly families: Uint8Array;
  readonly ports: Uint16Array;
  /** The arrays above as the addon holds them: what the batch I/O calls take. */
  readonly handle: NativeBatch;
  /** Packets currently described. */
  count = 0;

  constructor(opts: PacketBatchOptions) {
    const { capacity, slotSize } = opts;
    const slots = opts.slots ?? capacity;
    const headroom = opts.headroom ?? 0;
    const tailroom = opts.tailroom ?? 0;
    if (!Number.isInteger(capacity) || capacity <= 0 || !Number.isInteger(slots) || slots <= 0) {
      throw new VeilError('BATCH_LAYOUT', `packet batch capacity ${capacity} / slots ${slots} must be positive integers`);
    }
    if (headroom < 0 || tailroom < 0 || slotSize - headroom - tailroom < 64) {
      throw new VeilError('BATCH_LAYOUT', `packet batch slot of ${slotSize} bytes leaves no room for a packet after headroom ${headroom} and tailroom ${tailroom}`);
    }
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.slots = slots;
    this.headroom = headroom;
    this.tailroom = tailroom;
    this.buf = Buffer.alloc(slotSize * slots);
    this.offs = new Int32Array(capacity);
    this.lens = new Int32Array(capacity);
    this.addrs = new Uint8Array(16 * capacity);
    this.families = new Uint8Array(capacity);
    this.ports = new Uint16Array(capacity);
    this.handle = native().batchBind(this.buf, slotSize, headroom, tailroom, slots, this.offs, this.lens, this.addrs, this.families, this.ports);
  }

  /** Largest packet a slot holds between headroom and tailroom. */
  get maxPacket(): number {
    return this.slotSize - this.headroom - this.tailroom;
  }

  /** Offset of slot i's packet area (after the headroom). */
  slotOffset(i: number): number {
    return i * this.slotSize + this.headroom;
  }

  /** Sets packet i's descriptor (and the count to at least i + 1). */
  set(i: number, offset: number, length: number): void {
    this.offs[i] = offset;
    this.lens[i] = length;
    if (this.count <= i) this.count = i + 1;
  }

  /** Sets packet i's peer; addr holds 4 (IPv4) or 16 (IPv6) bytes from addrOffset. */
  setPeer(i: number, addr: Uint8Array, family: 4 | 6, port: number, addrOffset = 0): void {
    const n = family === 4 ? 4 : 16;
    for (let k = 0; k < n; k++) this.addrs[16 * i + k] = addr[addrOffset + k]!;
    this.families[i] = family;
    this.ports[i] = port;
  }

  /** A view of packet i (allocates a Buffer view: for tests and control paths, not per packet). */
  packet(i: number): Buffer {
    return this.buf.subarray(this.offs[i]!, this.offs[i]! + Math.max(0, this.lens[i]!));
  }

  /** A copy of packet i's peer address bytes (4 or 16). */
  peerAddress(i: number): Uint8Array {
    return this.addrs.slice(16 * i, 16 * i + (this.families[i] === 4 ? 4 : 16));
  }
}
