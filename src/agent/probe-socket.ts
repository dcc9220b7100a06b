// The health prober's socket for its own probes and their acks: a native UDP socket on an ephemeral
// port of the pod gateway address that nothing polls. The acks wait in the kernel, each stamped as it
// arrived (SO_TIMESTAMPNS), until the prober reads them all at once where it uses them (a probe
// round, a status): at 5,000 peers ~100 acks a second no longer wake the main thread one by one, and
// the kernel path that delivers each (the worker's TUN write) wakes no one. A round's probes are
// queued and leave in one sendmmsg (flush()), so the worker reads them from the TUN in a few batches.
import { check, native, UDP_MODE, UDP_STAT, UDP_STAT_COUNT } from '../native/addon.js';
import { formatIp, parseIp, tryParseIp } from '../net/cidr.js';
import { SendQueue, type DatagramSender } from '../datapath/send-queue.js';

/** Bytes read of a datagram: an ack is ~40-80 B; a longer datagram is no ack (read as truncated). */
const SLOT = 256;
/** Datagrams a read takes at most (one recvmmsg). */
const BATCH = 64;
/** Receive buffer: a round's acks (200, ~1 KB each as the kernel counts them) between two reads. */
const RECEIVE_BUFFER = 1 << 20;

/** A ProbeSocket's send queue: datagrams between two flushes, and their average length in bytes. */
export interface ProbeQueue {
  datagrams: number;
  bytes: number;
}

/** A datagram read: its bytes are buf[offset, offset + length); `at` is its arrival, whole ms since the epoch. */
export type ProbeDatagram = (buf: Buffer, offset: number, length: number, source: string, at: number) => void;

export class ProbeSocket {
  readonly port: number;
  readonly #fd: number;
  readonly #mode: number;
  readonly #buf = Buffer.alloc(SLOT * BATCH);
  readonly #lens = new Int32Array(BATCH);
  readonly #addrs = new Uint8Array(16 * BATCH);
  readonly #fams = new Uint8Array(BATCH);
  readonly #stamps = new Float64Array(BATCH);
  /**
   * The datagrams queued to go in one sendmmsg (flush()): a round's 200 probes sent one syscall each
   * woke the datapath worker about once a probe, each reaching the TUN alone.
   */
  readonly #out: SendQueue;
  /** Where the queue's datagrams go: this socket's fd (nothing once closed: they are dropped as lost probes are). */
  readonly #sender: DatagramSender = {
    sendBatch: (batch, n) => this.#closed ? 0 : native().udpSendBatch(this.#fd, batch.handle, n, this.#mode, this.#stats),
    sendTo: (data, addr, port, offset, length) =>
      !this.#closed && native().udpSend(this.#fd, data, offset, length, addr, addr.length === 4 ? 4 : 6, port, this.#mode) >= 0,
  };
  /** The addon's send counters (UDP_STAT): sendCalls are the sendmmsg calls. */
  readonly #stats = new Float64Array(UDP_STAT_COUNT);
  #closed = false;

  private constructor(fd: number, v6: boolean, queue: ProbeQueue) {
    this.#fd = fd;
    this.#mode = v6 ? UDP_MODE.SOCKET_V6 : 0;
    this.port = native().udpLocalPort(fd);
    this.#out = new SendQueue(this.#sender, { datagrams: queue.datagrams, bytes: queue.datagrams * Math.max(64, queue.bytes) });
  }

  /**
   * A socket on an ephemeral port of address (throws a VeilError when it cannot be bound), with room
   * to queue `queue.datagrams` datagrams of `queue.bytes` bytes on average between two flushes.
   */
  static open(address: string, queue: ProbeQueue = { datagrams: BATCH, bytes: 128 }): ProbeSocket {
    const n = native();
    const v6 = parseIp(address).family === 6;
    const fd = check(n.udpOpen(address, 0, v6 ? 1 : 0), `opening the health probes' socket on ${address}`);
    try {
      n.udpSetBuffers(fd, RECEIVE_BUFFER);
      check(n.udpSetRecvStamps(fd), "stamping the health probes' acks");
      return new ProbeSocket(fd, v6, queue);
    } catch (e) {
      n.close(fd);
      throw e;
    }
  }

  /**
   * Queues payload[0, length) for address:port, sent at the next flush() (now, when the queue is
   * full). An address that is none is dropped as a lost probe is (the peer goes unanswered).
   */
  queue(payload: Uint8Array, length: number, address: string, port: number): void {
    const a = tryParseIp(address);
    if (!this.#closed && a) this.#out.add(payload, length, a.bytes, port);
  }

  /**
   * Sends what is queued, in one sendmmsg (256 at most a call); returns how many the kernel took. An
   * error drops the rest as lost probes are.
   */
  flush(): number {
    return this.#out.flush();
  }

  /** The sendmmsg calls made so far (UDP_STAT.sendCalls). */
  get sendCalls(): number {
    return this.#stats[UDP_STAT.sendCalls]!;
  }

  /** Every datagram waiting, in arrival order, each handed to `on`; returns how many. */
  drain(on: ProbeDatagram): number {
    let total = 0;
    while (!this.#closed) {
      const n = native().udpRecvStamped(this.#fd, this.#buf, SLOT, this.#lens, this.#addrs, this.#fams, this.#stamps);
      if (n <= 0) break; // nothing waiting, or an error: the next read tries again
      for (let i = 0; i < n; i++) {
        const len = this.#lens[i]!;
        if (len < 0) continue;
        const at = this.#stamps[i]!;
        on(this.#buf, i * SLOT, len, formatIp(this.#addrs, this.#fams[i] === 4 ? 4 : 6, i * 16), Number.isNaN(at) ? Date.now() : Math.floor(at)); // whole ms, as Date.now()
      }
      total += n;
      if (n < BATCH) break;
    }
    return total;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().close(this.#fd);
  }
}
