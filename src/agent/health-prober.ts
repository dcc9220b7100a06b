// Node-to-node health probes through the tunnel: every interval each agent sends a small UDP probe
// from its pod gateway address to every peer's, and answers the probes it gets. Probes travel the
// same encrypted path as pod traffic, so they prove the path (and keep ESP/WireGuard visible on
// the wire even with no pod traffic, as Cilium's health checks do).
import { createSocket, type Socket } from 'node:dgram';
import type { Health } from './health.js';
import { MarkedSlots } from '../util/marked-slots.js';
import { ProbeSocket } from './probe-socket.js';

export const HEALTH_PORT = 4240;
/**
 * Probes sent per interval at most: in a large cluster each peer is probed every
 * ceil(peers / MAX) intervals instead (5,000 peers at the 2 s default: every 50 s), so probing costs
 * the same at any size.
 */
export const MAX_PROBES_PER_INTERVAL = 200;
/** The unreachable peers a status message names (the rest are counted). */
const NAMED_IN_STATUS = 10;

export interface PeerHealth {
  node: string;
  address: string;
  sent: number;
  acked: number;
  lastAckMs: number | null;
  rttMs: number | null;
}

/**
 * The ack a node sends for a probe (the probe's text split at spaces: `veil-probe <node> <seq>
 * <sentMs>`): `veil-ack <this node> <seq> <sentMs>`; null when it is not a probe.
 */
export function ackOfProbe(parts: readonly string[], node: string): string | null {
  return parts[0] === 'veil-probe' && parts.length === 4 ? `veil-ack ${node} ${parts[2]} ${parts[3]}` : null;
}

/** A peer to probe at its pod gateway; an external one (a Peer object, no agent there to answer) is not probed. */
export interface ProbeTarget {
  name: string;
  /** Its slot (PeerNode.slot): two targets of one pass never share one. */
  slot: number;
  podGateway: string;
  external?: unknown;
}

/** An ack's first bytes (ackOfProbe), and the bytes onAck() reads. */
const ACK_PREFIX = Buffer.from('veil-ack ', 'latin1');
const SPACE = 0x20;
const DIGIT_0 = 0x30;
/** Room for a probe's two numbers (seq and sentMs, each at most 16 digits: below 2^53) and their spaces. */
const PROBE_NUMBERS = 2 * 17;

/** n (a whole number >= 0 below 2^53) in decimal at buf[at..]; returns the offset after it. */
function writeDecimal(buf: Buffer, at: number, n: number): number {
  let digits = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
  for (let i = at + digits - 1; i >= at; i--) {
    buf[i] = DIGIT_0 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + digits;
}

/** A datagram's first 200 bytes as text, split at spaces. */
function fieldsOf(buf: Buffer, offset: number, length: number): string[] {
  return buf.toString('latin1', offset, offset + Math.min(length, 200)).split(' ');
}

/** Slots the count columns start with (they double when full). */
const INITIAL_SLOTS = 64;
/** A probe's sequence number is its slot's generation times this, plus its slot (both below 2^53 together). */
const SLOT_SPACE = 2 ** 24;
const MAX_GENERATION = 2 ** 28;

/** The sequence number a probe to `slot` carries, which its ack echoes: the slot, and the slot's generation. */
function probeSeq(slot: number, generation: number): number {
  return generation * SLOT_SPACE + slot;
}

export class HealthProber {
  /** Port 4240: answers the peers' probes as they come (their RTTs are theirs to time). */
  private socket?: Socket;
  /** This prober's probes and their acks, read when used (probe-socket.ts). */
  private probes?: ProbeSocket;
  private timer?: NodeJS.Timeout;
  /**
   * The peers probed, each in its own slot (ProbeTarget.slot, the node source's: no map of them by
   * address, ~50 B a peer), kept and marked pass after pass (marked-slots.ts); its counts and its
   * generation are columns by slot. An object per peer (a ProbedPeer, and its last ack time a heap
   * number) was ~96 B a peer.
   */
  private readonly probed = new MarkedSlots<ProbeTarget>();
  /** How many slots hold a peer. */
  private size = 0;
  /**
   * Bumped each time a slot's peer is new or gone: a probe's sequence number carries its slot and
   * the slot's generation (probeSeq), so a late ack for a peer gone is never counted for the next
   * one to hold the slot.
   */
  private generations = new Uint32Array(INITIAL_SLOTS);
  private sent = new Uint32Array(INITIAL_SLOTS);
  private acked = new Uint32Array(INITIAL_SLOTS);
  /** NaN: no ack yet. */
  private lastAckMs = new Float64Array(INITIAL_SLOTS);
  private rttMs = new Float64Array(INITIAL_SLOTS);
  /** Round-robin position: the slot probed next. */
  private cursor = 0;
  private passes = 0;
  readonly startedAt = Date.now();
  /**
   * A probe's bytes are made here: `veil-probe <node> ` kept, the two numbers written after it (a
   * template string and a Buffer a probe were garbage, 100 a second at 5,000 peers).
   */
  private readonly probe: Buffer;
  private readonly probePrefix: number;

  constructor(private readonly nodeName: string, private readonly localAddress: string, private readonly intervalMs: number) {
    const prefix = Buffer.from(`veil-probe ${nodeName} `);
    this.probe = Buffer.alloc(prefix.length + PROBE_NUMBERS);
    prefix.copy(this.probe);
    this.probePrefix = prefix.length;
  }

  async start(): Promise<void> {
    const s = createSocket({ type: this.localAddress.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    s.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(HEALTH_PORT, this.localAddress, () => { s.off('error', reject); resolve(); });
    });
    this.socket = s;
    try {
      this.probes = ProbeSocket.open(this.localAddress, { datagrams: MAX_PROBES_PER_INTERVAL, bytes: this.probe.length });
    } catch (e) {
      s.close();
      throw e;
    }
    this.timer = setInterval(() => this.probeAll(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * The peers to probe (every pass hands its peers as they are): an unchanged set costs a lookup per
   * peer and allocates nothing, where a map of the targets made each pass was ~0.3 MB of garbage at
   * 5,000 peers.
   */
  setPeers(peers: readonly ProbeTarget[]): void {
    this.readAcks(); // acks that came before a peer moves are counted for the peer that was probed
    const pass = ++this.passes;
    const probed = this.probed;
    let unmatched: ProbeTarget[] | undefined; // new, moved, or in a slot another peer held
    for (let i = 0; i < peers.length; i++) { // indexed: an iterator's results were garbage too
      const p = peers[i]!;
      if (p.external) continue;
      const had = probed.at(p.slot);
      if (had !== undefined && had.name === p.name && had.podGateway === p.podGateway) {
        if (had !== p && !probed.marked(p.slot, pass)) probed.set(p.slot, p, pass); // the same peer, its object anew: its counts kept
        else probed.mark(p.slot, pass);
      } else (unmatched ??= []).push(p);
    }
    if (unmatched) {
      // One address is one probe target: an address an entry this pass wants already holds (a
      // forged podGateway) is not probed again. Made only on a pass that brings new targets.
      const wanted = new Set<string>();
      probed.forEach((t, slot) => { if (probed.marked(slot, pass)) wanted.add(t.podGateway); });
      for (const p of unmatched) {
        if (wanted.has(p.podGateway) || probed.marked(p.slot, pass)) continue; // a slot twice in a pass: its first peer stands
        wanted.add(p.podGateway);
        if (probed.at(p.slot) === undefined) this.size++;
        this.resetSlot(p.slot);
        probed.set(p.slot, p, pass); // new here: a moved peer's counts are not its successor's
      }
    }
    probed.forgetUnmarked(pass, (_, slot) => { this.size--; this.generations[slot] = (this.generations[slot]! + 1) % MAX_GENERATION; }); // gone: its late acks no longer match
  }

  /** A slot's peer is new there: a new generation, no probes yet (the columns grown to hold it). */
  private resetSlot(slot: number): void {
    if (slot >= this.sent.length) {
      const size = Math.max(this.sent.length * 2, slot + 1);
      const grow = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => { const b = make(size); b.set(a); return b; };
      this.generations = grow(this.generations, (n) => new Uint32Array(n));
      this.sent = grow(this.sent, (n) => new Uint32Array(n));
      this.acked = grow(this.acked, (n) => new Uint32Array(n));
      this.lastAckMs = grow(this.lastAckMs, (n) => new Float64Array(n));
      this.rttMs = grow(this.rttMs, (n) => new Float64Array(n));
    }
    this.generations[slot] = (this.generations[slot]! + 1) % MAX_GENERATION;
    this.sent[slot] = 0;
    this.acked[slot] = 0;
    this.lastAckMs[slot] = NaN;
    this.rttMs[slot] = NaN;
  }

  /** How many intervals pass between two probes of the same peer. */
  private get rounds(): number {
    return Math.max(1, Math.ceil(this.size / MAX_PROBES_PER_INTERVAL));
  }

  private probeAll(): void {
    this.readAcks();
    const now = Date.now();
    const slots = this.probed.length;
    let n = Math.min(this.size, MAX_PROBES_PER_INTERVAL);
    for (let k = 0; k < slots && n > 0; k++) { // the slots in turn from the cursor, free ones skipped
      if (this.cursor >= slots) this.cursor = 0;
      const slot = this.cursor++;
      const target = this.probed.at(slot);
      if (target === undefined) continue;
      n--;
      this.sent[slot]!++;
      this.probes?.queue(this.probe, this.probeBytes(probeSeq(slot, this.generations[slot]!), now), target.podGateway, HEALTH_PORT);
    }
    this.probes?.flush(); // the round in one sendmmsg: the worker reads it from the TUN in a few batches, not a wake-up a probe
  }

  /** The probe `veil-probe <node> <seq> <sentMs>` in this.probe: its length. */
  private probeBytes(seq: number, sentMs: number): number {
    const at = writeDecimal(this.probe, this.probePrefix, seq);
    this.probe[at] = SPACE;
    return writeDecimal(this.probe, at + 1, sentMs);
  }

  /**
   * A datagram on port 4240: a peer's probe is answered at once, to the port it came from. Acks do
   * not come here: this node's probes leave from the probes' own socket, and peers answer there.
   */
  private onMessage(msg: Buffer, address: string, port: number): void {
    const ack = ackOfProbe(fieldsOf(msg, 0, msg.length), this.nodeName);
    if (ack !== null) this.socket?.send(Buffer.from(ack), port, address, () => undefined);
  }

  /**
   * A datagram on the probes' socket, arrived at `at`: an ack is counted (a probe is not answered
   * there: peers probe port 4240).
   */
  private readonly onProbeReply = (buf: Buffer, offset: number, length: number, source: string, at: number): void => {
    if (!this.onAck(buf, offset, length, source, at)) this.onTextAck(fieldsOf(buf, offset, length), source, at);
  };

  /**
   * An ack (~100 a second at 5,000 peers) is read from its bytes by onAck: its text and the split's
   * strings and array were garbage on every one. An ack the bytes' reading does not settle is read
   * here from its text, which gives the same answer.
   */
  private onTextAck(parts: readonly string[], address: string, now: number): void {
    if (parts[0] !== 'veil-ack' || parts.length !== 4) return;
    const seq = Number(parts[2]), sentAt = Number(parts[3]);
    if (Number.isFinite(sentAt)) this.countAck(seq, address, sentAt, now);
  }

  /**
   * An ack `veil-ack <node> <seq> <sentMs>` whose sentMs is 1-15 decimal digits (every ack a
   * prober sends: Date.now()), counted as the text's path counts it; false for anything else (not
   * an ack, another shape, other digits), which that path then reads as before.
   */
  private onAck(msg: Buffer, start: number, length: number, address: string, now: number): boolean {
    const end = start + Math.min(length, 200); // the text's path reads the first 200 bytes as well
    if (end - start < ACK_PREFIX.length + 5) return false;
    for (let i = 0; i < ACK_PREFIX.length; i++) if (msg[start + i] !== ACK_PREFIX[i]) return false;
    let spaces = 0, first = -1, last = -1; // the fields after the prefix: node, seq, sentMs
    for (let i = start + ACK_PREFIX.length; i < end; i++) if (msg[i] === SPACE) { spaces++; if (first < 0) first = i; last = i; }
    if (spaces !== 2 || end - last - 1 < 1 || end - last - 1 > 15 || last - first - 1 < 1 || last - first - 1 > 15) return false;
    let seq = 0;
    for (let i = first + 1; i < last; i++) {
      const d = msg[i]! - DIGIT_0;
      if (d < 0 || d > 9) return false;
      seq = seq * 10 + d;
    }
    let sentAt = 0;
    for (let i = last + 1; i < end; i++) {
      const d = msg[i]! - DIGIT_0;
      if (d < 0 || d > 9) return false;
      sentAt = sentAt * 10 + d;
    }
    this.countAck(seq, address, sentAt, now);
    return true;
  }

  /**
   * The acks waiting on the probes' socket, each counted at its arrival (the kernel's stamp): read
   * where the counts are used, so ~100 a second at 5,000 peers cost a read now and then, not a
   * wake-up each.
   */
  private readAcks(): void {
    this.probes?.drain(this.onProbeReply);
  }

  /**
   * An ack from address for probe `seq`, sent at sentAt (ms), arrived at now: counted and timed for
   * the peer the probe went to. One for a slot whose peer has gone or changed since (another
   * generation), or from another address than the slot's peer's, is ignored.
   */
  private countAck(seq: number, address: string, sentAt: number, now: number): void {
    if (!Number.isSafeInteger(seq) || seq < 0) return;
    const slot = seq % SLOT_SPACE;
    const target = this.probed.at(slot);
    if (target === undefined || target.podGateway !== address || this.generations[slot] !== Math.floor(seq / SLOT_SPACE)) return;
    this.acked[slot]!++;
    this.lastAckMs[slot] = now;
    this.rttMs[slot] = now - sentAt;
  }

  /**
   * Sets the agent's 'node-connectivity' check from the probes: the peers that did not answer
   * recently (after a start-up grace period), a few named and the rest counted. Every publish check
   * asks (every 2 s): it makes no list of the peers (two arrays of every peer were ~0.2 MB each time at 5,000).
   */
  reportTo(health: Health, now = Date.now()): void {
    this.readAcks();
    const limit = 3 * this.intervalMs * this.rounds + 5000;
    let down = 0;
    const named: string[] = [];
    if (now - this.startedAt >= limit) {
      for (let slot = 0; slot < this.probed.length; slot++) {
        const node = this.probed.at(slot)?.name;
        if (node === undefined || now - this.lastAckMs[slot]! <= limit) continue; // NaN (no ack yet) is not <=
        if (down++ < NAMED_IN_STATUS) named.push(node);
      }
    }
    const more = down > NAMED_IN_STATUS ? ` and ${down - NAMED_IN_STATUS} more` : '';
    if (down) health.set('node-connectivity', 'Degraded', `no probe answer through the tunnel from ${named.join(', ')}${more}`);
    else health.ok('node-connectivity');
  }

  /** Each probed peer's counts (a status answer: made when asked). */
  list(): PeerHealth[] {
    this.readAcks();
    const out: PeerHealth[] = [];
    for (let slot = 0; slot < this.probed.length; slot++) {
      const target = this.probed.at(slot);
      if (target === undefined) continue;
      const lastAckMs = this.lastAckMs[slot]!, rttMs = this.rttMs[slot]!;
      out.push({ node: target.name, address: target.podGateway, sent: this.sent[slot]!, acked: this.acked[slot]!, lastAckMs: Number.isNaN(lastAckMs) ? null : lastAckMs, rttMs: Number.isNaN(rttMs) ? null : rttMs });
    }
    return out;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket?.close();
    this.probes?.close();
  }
}
