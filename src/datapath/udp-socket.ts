// The underlay UDP socket: IPv4 or IPv6, non-blocking, big buffers, batched receive (recvmmsg, UDP
// GRO) and batched send (sendmmsg to per-packet peers, UDP GSO) through the native addon.
import { isIP } from 'node:net';
import { VeilError } from '../util/errors.js';
import { parseIp } from '../net/cidr.js';
import { check, countersFrom, decodeNativeError, ERROR_STAGE, native, nativeError, UDP_DRAINED_SLOT, UDP_MODE, UDP_STAT, UDP_STAT_COUNT } from '../native/addon.js';
import type { PacketBatch } from './packet-batch.js';

export interface UdpOpenOptions {
  /** UDP_GRO: the kernel may deliver coalesced datagrams (split again here). Default false. */
  gro?: boolean;
  /** UDP_SEGMENT on send for runs of same-size packets to one peer. Default false. */
  gso?: boolean;
  /** SO_RCVBUF/SO_SNDBUF (FORCE when permitted). Default 7 MiB, as wireguard-go. */
  bufferBytes?: number;
  /** For an IPv6 bind address: refuse IPv4 (default false: "::" also serves IPv4). */
  v6only?: boolean;
}

/** What a worker thread needs to use a socket opened elsewhere (fds are process-wide). */
export interface UdpSocketDescriptor {
  fd: number;
  family: 4 | 6;
  address: string;
  port: number;
  gro: boolean;
  gso: boolean;
  bufferBytes: number;
  /** A raw ESP socket (raw-esp-socket.ts), not UDP. */
  rawEsp?: boolean;
}

export type UdpCounters = Record<keyof typeof UDP_STAT, number>;

/** Slot size for a GRO receive batch: a coalesced datagram may be up to 64 KiB. */
export const UDP_GRO_SLOT = 65536;
/**
 * Most packets one received datagram may carry: the kernel's GRO stops at 64 segments
 * (UDP_GRO_CNT_MAX), and veil and wireguard-go send at most 64 per UDP_SEGMENT datagram.
 */
export const UDP_GRO_MAX_SEGMENTS = 64;

export class UdpSocket {
  readonly fd: number;
  readonly family: 4 | 6;
  readonly address: string;
  /** The bound port (the kernel's choice when opened with port 0). */
  readonly port: number;
  readonly gro: boolean;
  /** Receive buffer the kernel granted. */
  readonly bufferBytes: number;
  /** UDP_SEGMENT use; turned off when the kernel refuses it (stats.gsoFallback). */
  gso: boolean;
  readonly stats = new Float64Array(UDP_STAT_COUNT);
  readonly #pollFds: Int32Array;
  #closed = false;

  protected constructor(fd: number, family: 4 | 6, address: string, port: number, gro: boolean, gso: boolean, bufferBytes: number) {
    this.fd = fd;
    this.family = family;
    this.address = address;
    this.port = port;
    this.gro = gro;
    this.gso = gso;
    this.bufferBytes = bufferBytes;
    this.#pollFds = Int32Array.of(fd);
  }

  /** Binds addr:port (port 0: any free port). */
  static open(address: string, port: number, opts: UdpOpenOptions = {}): UdpSocket {
    const family = isIP(address);
    if (family !== 4 && family !== 6) {
      throw new VeilError('UDP_ADDRESS', `'${address}' is not an IP address`, 'give an IPv4 (10.0.0.1) or IPv6 (fd00::1) address');
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new VeilError('UDP_PORT', `invalid UDP port ${port}`, 'use 0-65535');
    const n = native();
    const fd = n.udpOpen(address, port, opts.v6only ? 1 : 0);
    if (fd < 0) throw nativeError(fd, `cannot bind UDP ${family === 6 ? `[${address}]` : address}:${port}`);
    try {
      const granted = check(n.udpSetBuffers(fd, opts.bufferBytes ?? 7 << 20), 'setting UDP socket buffers');
      if (opts.gro) check(n.udpSetGro(fd, 1), 'enabling UDP GRO');
      const bound = check(n.udpLocalPort(fd), 'reading the bound UDP port');
      return new UdpSocket(fd, family, address, bound, !!opts.gro, !!opts.gso, granted);
    } catch (e) {
      n.close(fd);
      throw e;
    }
  }

  /** Wraps a socket opened by another thread (from describe()). */
  static adopt(d: UdpSocketDescriptor): UdpSocket {
    return new UdpSocket(d.fd, d.family, d.address, d.port, d.gro, d.gso, d.bufferBytes);
  }

  describe(): UdpSocketDescriptor {
    return { fd: this.fd, family: this.family, address: this.address, port: this.port, gro: this.gro, gso: this.gso, bufferBytes: this.bufferBytes };
  }

  /**
   * Receives up to batch.capacity packets (at most batch.slots datagrams; with GRO at most
   * capacity / UDP_GRO_MAX_SEGMENTS), each datagram at its slot's headroom, GRO super-datagrams
   * split into descriptors; the sender of each packet goes to
   * batch.addrs/families/ports. Sets batch.count and returns it (0 when nothing is waiting).
   */
  recvBatch(batch: PacketBatch): number {
    // A datagram taken from the socket must fit whole: segments beyond the batch's descriptors
    // would be lost (dropNoRoom), so with GRO take only as many as the worst case fits.
    const datagrams = this.gro ? Math.max(1, Math.min(batch.slots, Math.floor(batch.capacity / UDP_GRO_MAX_SEGMENTS))) : batch.slots;
    const r = native().udpRecvBatch(this.fd, batch.handle, datagrams, batch.capacity, this.stats);
    if (r < 0) throw nativeError(r, `receiving on UDP port ${this.port}`);
    batch.count = r;
    return r;
  }

  /**
   * Sends packets 0..n-1 (lens < 0 skipped) each to its own peer; returns how many the kernel took.
   * Fewer than queued means the socket buffer is full: the rest are the caller's to drop or retry.
   */
  sendBatch(batch: PacketBatch, n = batch.count): number {
    const fallbacks = this.stats[UDP_STAT.gsoFallback]!;
    const mode = (this.gso ? UDP_MODE.GSO : 0) | (this.family === 6 ? UDP_MODE.SOCKET_V6 : 0);
    const sent = native().udpSendBatch(this.fd, batch.handle, n, mode, this.stats);
    if (this.stats[UDP_STAT.gsoFallback]! > fallbacks) this.gso = false;
    return sent;
  }

  /**
   * Sends one datagram (control messages: handshakes, cookies). Returns false when it was not
   * sent: the socket buffer is full, or the kernel refused this destination (no route back to a
   * spoofed handshake source, a firewall): such a failure concerns that datagram only, so it is
   * counted (sendErrors, lastErrno) and never ends the datapath. Throws a VeilError only for an
   * address this socket cannot send to at all (wrong family).
   */
  sendTo(data: Uint8Array, address: string | Uint8Array, port: number, offset = 0, length = data.length - offset): boolean {
    const addr = typeof address === 'string' ? parseIp(address) : { bytes: address, family: address.length === 4 ? 4 : 6 };
    const mode = this.family === 6 ? UDP_MODE.SOCKET_V6 : 0;
    const r = native().udpSend(this.fd, data, offset, length, addr.bytes, addr.family, port, mode);
    if (r >= 0) return true;
    const d = decodeNativeError(r);
    if (d.stage === ERROR_STAGE.io) {
      if (d.name !== 'EAGAIN' && d.name !== 'ENOBUFS') this.stats[UDP_STAT.sendErrors]!++;
      this.stats[UDP_STAT.lastErrno] = d.errno;
      return false;
    }
    throw nativeError(r, `sending to ${typeof address === 'string' ? address : 'peer'} port ${port}`);
  }

  /** Blocks up to timeoutMs for a datagram (worker threads only). */
  waitReadable(timeoutMs: number): boolean {
    return check(native().waitReadable(this.#pollFds, 1, timeoutMs), `waiting on UDP port ${this.port}`) !== 0;
  }

  /** Whether the last recvBatch found the queue empty: receiving again now would return nothing. */
  get drained(): boolean {
    return this.stats[UDP_DRAINED_SLOT] === 1;
  }

  counters(): UdpCounters {
    return countersFrom(this.stats, UDP_STAT);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().close(this.fd);
  }
}
