// Single packets into the TUN device, off the batch path: ICMP "too big" answers to oversized
// packets, and packets the protocol cores release one at a time (staged until a handshake,
// CBC+HMAC ESP).
import { buildTooBig } from '../net/icmp-too-big.js';
import { PacketBatch } from './packet-batch.js';
import type { TunDevice } from './tun-device.js';

export class SinglePacketWriter {
  private readonly one = new PacketBatch({ capacity: 1, slotSize: 65536 });
  private readonly answer = new Uint8Array(1280);

  constructor(private readonly tun: TunDevice, private readonly mtu: number) {}

  /** Writes packet[0..length) to the TUN device. */
  write(packet: Uint8Array, length = packet.length): void {
    const b = this.one;
    b.buf.set(packet.subarray(0, length), 0);
    b.set(0, 0, length);
    b.count = 1;
    this.tun.writeBatch(b, 1);
  }

  /** Answers the oversized packet buf[off..off+len) with ICMP/ICMPv6 "too big" (when one may be sent). */
  answerTooBig(buf: Uint8Array, off: number, len: number): void {
    const n = buildTooBig(buf, off, len, this.mtu, this.answer);
    if (n > 0) this.write(this.answer, n);
  }
}
