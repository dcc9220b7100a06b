// A TUN device (one queue = one fd): batched reads and writes through the native addon. With
// vnetHdr the kernel hands over 64 KiB TCP super-packets (TSO) that the addon splits into MTU-sized
// packets, and writes may coalesce TCP segments back into super-packets (GRO-like).
import { VeilError } from '../util/errors.js';
import { check, countersFrom, decodeNativeError, ERROR_STAGE, native, nativeError, TUN_F, TUN_DRAINED_SLOT, TUN_OPEN, TUN_STAT, TUN_STAT_COUNT, TUN_WRITE } from '../native/addon.js';
import type { PacketBatch } from './packet-batch.js';

export interface TunOpenOptions {
  /** IFF_VNET_HDR: read/write with a virtio-net header, enabling offloads (default false). */
  vnetHdr?: boolean;
  /** IFF_MULTI_QUEUE: more queues (fds) can attach, one per worker (default false). */
  multiQueue?: boolean;
  /** TUNSETPERSIST: the link outlives the fd (default false). */
  persist?: boolean;
  /** TUN_F_* offloads when vnetHdr (default CSUM | TSO4 | TSO6). */
  offloads?: number;
}

export interface TunWriteOptions {
  /** Merge consecutive in-order TCP segments of one flow into one super-packet (vnetHdr only). */
  coalesce?: boolean;
  /** The packets were authenticated by AEAD: skip the checksum checks (kernel and ours). */
  checksumsTrusted?: boolean;
  /**
   * Give up the CPU (sched_yield) after every this many writes when more follow (0: never). Each
   * write delivers its packet to the receiving socket at once and wakes the reader on this CPU,
   * where it cannot run until the writer blocks: without a yield a long batch of small packets can
   * fill a receiver's socket buffer before it reads the first one.
   */
  yieldEvery?: number;
}

/** What a worker thread needs to use a queue opened elsewhere (fds are process-wide). */
export interface TunQueueDescriptor {
  fd: number;
  name: string;
  vnetHdr: boolean;
  multiQueue: boolean;
  offloads: number;
}

export type TunCounters = Record<keyof typeof TUN_STAT, number>;

/**
 * Writes between yields when the engines write a received batch (up to 256 packets) into the TUN:
 * the receiving socket (a pod's, default buffer ~90 packets of 1.4 KB) gets every packet at once
 * and its reader, woken onto this CPU, runs only when the worker lets it. 8: bench, README.
 */
export const TUN_YIELD_EVERY = 8;

export const DEFAULT_TUN_OFFLOADS = TUN_F.CSUM | TUN_F.TSO4 | TUN_F.TSO6;
const VNET_SCRATCH = 4 + 10 + 65536 + 512;
const IFNAMSIZ = 16;

export class TunDevice {
  readonly fd: number;
  readonly name: string;
  readonly vnetHdr: boolean;
  readonly multiQueue: boolean;
  /** TUN_F_* offloads in force (0 when the kernel refused the requested ones). */
  readonly offloads: number;
  /** Counters the addon adds to (see TUN_STAT); per queue. */
  readonly stats = new Float64Array(TUN_STAT_COUNT);
  readonly #scratch: Buffer | null;
  readonly #pollFds: Int32Array;
  #closed = false;

  private constructor(d: TunQueueDescriptor) {
    this.fd = d.fd;
    this.name = d.name;
    this.vnetHdr = d.vnetHdr;
    this.multiQueue = d.multiQueue;
    this.offloads = d.offloads;
    this.#scratch = d.vnetHdr ? Buffer.alloc(VNET_SCRATCH) : null;
    this.#pollFds = Int32Array.of(d.fd);
  }

  /** Creates (or attaches to) TUN device `name` and opens one queue, non-blocking. */
  static open(name: string, opts: TunOpenOptions = {}): TunDevice {
    if (!name || name.length >= IFNAMSIZ || /[\s/]/.test(name)) {
      throw new VeilError('TUN_NAME', `invalid TUN device name '${name}'`, `use 1-${IFNAMSIZ - 1} characters without spaces or '/'`);
    }
    const n = native();
    const flags = (opts.vnetHdr ? TUN_OPEN.VNET_HDR : 0) | (opts.multiQueue ? TUN_OPEN.MULTI_QUEUE : 0) | (opts.persist ? TUN_OPEN.PERSIST : 0);
    const fd = n.tunOpen(name, flags);
    if (fd < 0) throw nativeError(fd, decodeNativeError(fd).stage === ERROR_STAGE.tunOpen ? 'cannot open /dev/net/tun' : `cannot create TUN device ${name}`);
    let offloads = 0;
    if (opts.vnetHdr) {
      const want = opts.offloads ?? DEFAULT_TUN_OFFLOADS;
      if (n.tunSetOffload(fd, want) === 0) offloads = want;
      else if (n.tunSetOffload(fd, 0) < 0) {
        n.close(fd);
        throw new VeilError('TUN_OFFLOAD', `cannot configure offloads on ${name}`, 'open the device without vnetHdr');
      }
    }
    const actual = n.tunName(fd);
    return new TunDevice({ fd, name: typeof actual === 'string' ? actual : name, vnetHdr: !!opts.vnetHdr, multiQueue: !!opts.multiQueue, offloads });
  }

  /** Wraps a queue opened by another thread (from describe()). */
  static adopt(d: TunQueueDescriptor): TunDevice {
    return new TunDevice(d);
  }

  /** Opens another queue of this multi-queue device (for another worker). */
  openQueue(): TunDevice {
    if (!this.multiQueue) throw new VeilError('TUN_QUEUE', `TUN device ${this.name} was opened without multiQueue`, 'open it with { multiQueue: true }');
    return TunDevice.open(this.name, { vnetHdr: this.vnetHdr, multiQueue: true, offloads: this.offloads });
  }

  describe(): TunQueueDescriptor {
    return { fd: this.fd, name: this.name, vnetHdr: this.vnetHdr, multiQueue: this.multiQueue, offloads: this.offloads };
  }

  /**
   * Reads packets until the queue is empty or the batch is full; sets batch.count and returns it.
   * Each packet sits at its slot's headroom; super-packets come out already segmented and packets
   * with a partial checksum come out with a complete one.
   */
  readBatch(batch: PacketBatch): number {
    const r = native().tunReadBatch(this.fd, batch.handle, Math.min(batch.capacity, batch.slots), this.vnetHdr ? 1 : 0, this.#scratch, this.stats);
    if (r < 0) throw nativeError(r, `reading from TUN device ${this.name}`);
    batch.count = r;
    return r;
  }

  /**
   * Writes packets 0..n-1 of the batch (lens <= 0 are skipped); returns how many the kernel took.
   * Coalescing rewrites the first packet of each merged run in place.
   */
  writeBatch(batch: PacketBatch, n = batch.count, opts: TunWriteOptions = {}): number {
    const mode = (this.vnetHdr ? TUN_WRITE.VNET : 0) | (opts.coalesce ? TUN_WRITE.COALESCE : 0) |
      (opts.checksumsTrusted ? TUN_WRITE.CSUM_TRUSTED : 0);
    return native().tunWriteBatch(this.fd, batch.handle, n, mode, this.stats, opts.yieldEvery ?? 0);
  }

  /** Blocks up to timeoutMs for a packet (worker threads only). */
  waitReadable(timeoutMs: number): boolean {
    return check(native().waitReadable(this.#pollFds, 1, timeoutMs), `waiting on TUN device ${this.name}`) !== 0;
  }

  /** Whether the last readBatch found the device empty: reading again now would return nothing. */
  get drained(): boolean {
    return this.stats[TUN_DRAINED_SLOT] === 1;
  }

  counters(): TunCounters {
    return countersFrom(this.stats, TUN_STAT);
  }

  /** Closes this queue (the link goes away with its last queue unless persistent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().close(this.fd);
  }
}
