// Datagrams queued between two flushes and sent together with one sendmmsg: the WireGuard core's own
// datagrams of one engine entry point (a tick's keepalives and initiations, handshake answers:
// wireguard-engine.ts) and a health-probe round's probes (agent/probe-socket.ts). One syscall a
// datagram woke the other end's reader once a datagram (docs/performance-log.md, sessions 33-34).
// The bytes are packed in one buffer in the order queued, so the order on the wire is the order
// asked for; a datagram larger than the whole buffer goes alone, after what is queued.
import { PacketBatch } from './packet-batch.js';

/** How queued datagrams leave (a UdpSocket is one). */
export interface DatagramSender {
  /** Sends batch's first n datagrams (one sendmmsg); returns how many the kernel took. */
  sendBatch(batch: PacketBatch, n: number): number;
  /** Sends data[offset, offset + length) alone to addr (4 or 16 bytes):port; false when not taken. */
  sendTo(data: Uint8Array, addr: Uint8Array, port: number, offset: number, length: number): boolean;
}

export interface SendQueueOptions<Tag> {
  /** Datagrams queued at most before a flush is forced. */
  datagrams: number;
  /** Bytes of the buffer they are packed in. */
  bytes: number;
  /** Called for each datagram the kernel took that was queued with a tag (its sender's counters). */
  sent?: (tag: Tag) => void;
  /** Called with how many datagrams the kernel did not take. */
  failed?: (n: number) => void;
}

export class SendQueue<Tag = never> {
  private readonly batch: PacketBatch;
  /** Each queued datagram's tag; undefined: none (not counted for anyone). */
  private readonly tags: (Tag | undefined)[];
  /** Where the next queued datagram's bytes go in the batch's buffer. */
  private at = 0;
  private readonly sent?: (tag: Tag) => void;
  private readonly failed?: (n: number) => void;

  constructor(private readonly sender: DatagramSender, opts: SendQueueOptions<Tag>) {
    this.batch = new PacketBatch({ capacity: opts.datagrams, slotSize: Math.max(64, Math.ceil(opts.bytes / opts.datagrams)) });
    this.tags = new Array<Tag | undefined>(opts.datagrams).fill(undefined);
    this.sent = opts.sent;
    this.failed = opts.failed;
  }

  /** Datagrams queued now. */
  get count(): number {
    return this.batch.count;
  }

  /**
   * Queues data[0, length) for addr (4 or 16 bytes, copied now):port, sent at the next flush() (at
   * once when the queue is full). `tag`, when given, is handed to `sent` once the kernel took it.
   */
  add(data: Uint8Array, length: number, addr: Uint8Array, port: number, tag?: Tag): void {
    const b = this.batch;
    if (b.count === b.capacity || this.at + length > b.buf.length) this.flush();
    if (length > b.buf.length) {
      if (!this.sender.sendTo(data, addr, port, 0, length)) this.failed?.(1);
      else if (tag !== undefined) this.sent?.(tag);
      return;
    }
    b.buf.set(length === data.length ? data : data.subarray(0, length), this.at);
    const i = b.count;
    b.set(i, this.at, length);
    b.setPeer(i, addr, addr.length === 4 ? 4 : 6, port);
    this.tags[i] = tag;
    this.at += length;
  }

  /**
   * Sends what is queued, in one sendmmsg; returns how many the kernel took. It takes them in order;
   * one it refuses (no route back to a spoofed source) is skipped and counted, the rest still go.
   * Which ones it took is not told: the tags of the first ones are counted.
   */
  flush(): number {
    const b = this.batch, n = b.count;
    if (n === 0) return 0;
    b.count = 0;
    this.at = 0;
    const sent = Math.max(0, this.sender.sendBatch(b, n));
    const tags = this.tags;
    for (let i = 0; i < n; i++) {
      const tag = tags[i];
      if (tag === undefined) continue;
      if (i < sent) this.sent?.(tag);
      tags[i] = undefined;
    }
    if (sent < n) this.failed?.(n - sent);
    return sent;
  }
}
