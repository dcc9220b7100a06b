// The health prober's socket for its own probes and their acks: a native UDP socket on an ephemeral
// port of the pod gateway address that nothing polls. The acks wait in the kernel, each stamped as it
// arrived (SO_TIMESTAMPNS), until the prober reads them all at once where it uses them (a probe
// round, a status): at 5,000 peers ~100 acks a second no longer wake the main thread one by one, and
// the kernel path that delivers each (the worker's TUN write) wakes no one.
import { check, native, UDP_MODE } from '../native/addon.js';
import { formatIp, parseIp, tryParseIp } from '../net/cidr.js';

/** Bytes read of a datagram: an ack is ~40-80 B; a longer datagram is no ack (read as truncated). */
const SLOT = 256;
/** Datagrams a read takes at most (one recvmmsg). */
const BATCH = 64;
/** Receive buffer: a round's acks (200, ~1 KB each as the kernel counts them) between two reads. */
const RECEIVE_BUFFER = 1 << 20;

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
  #closed = false;

  private constructor(fd: number, v6: boolean) {
    this.#fd = fd;
    this.#mode = v6 ? UDP_MODE.SOCKET_V6 : 0;
    this.port = native().udpLocalPort(fd);
  }

  /** A socket on an ephemeral port of address (throws a VeilError when it cannot be bound). */
  static open(address: string): ProbeSocket {
    const n = native();
    const v6 = parseIp(address).family === 6;
    const fd = check(n.udpOpen(address, 0, v6 ? 1 : 0), `opening the health probes' socket on ${address}`);
    try {
      n.udpSetBuffers(fd, RECEIVE_BUFFER);
      check(n.udpSetRecvStamps(fd), "stamping the health probes' acks");
      return new ProbeSocket(fd, v6);
    } catch (e) {
      n.close(fd);
      throw e;
    }
  }

  /**
   * Sends payload to address:port; an error, or an address that is none, is dropped as a lost probe
   * is (the peer goes unanswered).
   */
  send(payload: Uint8Array, address: string, port: number): void {
    const a = tryParseIp(address);
    if (this.#closed || !a) return;
    native().udpSend(this.#fd, payload, 0, payload.length, a.bytes, a.family, port, this.#mode);
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
