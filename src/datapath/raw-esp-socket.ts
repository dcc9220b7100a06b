// Raw ESP on the underlay (IP protocol 50, no UDP), as Cilium's nodes send it: a raw IP socket
// bound to the node's address. This host's kernel has no ESP SA for these packets, so it hands
// every protocol-50 packet for that address to the socket. The socket is a UdpSocket in every
// other way (batched recvmmsg/sendmmsg with per-packet addresses, the same counters), with two
// differences: an IPv4 raw socket receives the outer IP header, skipped here so the batch holds
// ESP exactly as a UDP socket's would, and the port is 0 (IPv6 raw sockets refuse another).
import { isIP } from 'node:net';
import { VeilError } from '../util/errors.js';
import { native, nativeError, check } from '../native/addon.js';
import type { PacketBatch } from './packet-batch.js';
import { UdpSocket, type UdpSocketDescriptor } from './udp-socket.js';

export const IPPROTO_ESP = 50;

export class RawEspSocket extends UdpSocket {
  /** Binds a raw ESP socket to the node's address (IPv4 or IPv6). */
  static openEsp(address: string, bufferBytes = 7 << 20): RawEspSocket {
    const family = isIP(address);
    if (family !== 4 && family !== 6) {
      throw new VeilError('UDP_ADDRESS', `'${address}' is not an IP address`, 'give an IPv4 (10.0.0.1) or IPv6 (fd00::1) address');
    }
    const n = native();
    const fd = n.rawOpen(address, IPPROTO_ESP);
    if (fd < 0) throw nativeError(fd, `cannot open a raw ESP socket on ${address}`);
    try {
      const granted = check(n.udpSetBuffers(fd, bufferBytes), 'setting raw ESP socket buffers');
      return new RawEspSocket(fd, family, address, 0, false, false, granted);
    } catch (e) {
      n.close(fd);
      throw e;
    }
  }

  static override adopt(d: UdpSocketDescriptor): RawEspSocket {
    return new RawEspSocket(d.fd, d.family, d.address, 0, false, false, d.bufferBytes);
  }

  override describe(): UdpSocketDescriptor {
    return { ...super.describe(), rawEsp: true };
  }

  /** Receives like a UDP socket; on IPv4 each packet then starts after its IP header. */
  override recvBatch(batch: PacketBatch): number {
    const n = super.recvBatch(batch);
    if (this.family === 4) {
      const buf = batch.buf;
      for (let i = 0; i < n; i++) {
        const off = batch.offs[i]!, len = batch.lens[i]!;
        const ihl = len >= 20 ? (buf[off]! & 0x0f) * 4 : 0;
        if (ihl < 20 || ihl > len) { batch.lens[i] = 0; continue; } // not an IPv4 header: left as an empty, truncated packet
        batch.offs[i] = off + ihl;
        batch.lens[i] = len - ihl;
      }
    }
    return n;
  }
}

/** The underlay socket a worker adopts: UDP, or raw ESP when the descriptor says so. */
export function adoptUnderlaySocket(d: UdpSocketDescriptor): UdpSocket {
  return d.rawEsp ? RawEspSocket.adopt(d) : UdpSocket.adopt(d);
}
