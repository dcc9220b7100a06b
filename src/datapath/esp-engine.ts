// The ESP shell of the datapath (ESP in UDP or raw ESP, tunnel mode): batches from the TUN device are routed
// by the allowed-ips trie to a peer's active outbound SA, framed by the core (src/esp/) and sealed
// natively (AES-GCM); batches from the socket are matched to an inbound SA by (source, SPI),
// accepted by the core (lengths, ESN replay window), opened natively, accepted again (ICV, trailer,
// replay), source-checked and written to the TUN device. CBC+HMAC SAs take the single-packet path
// of src/esp/. Every SA decision (which keys, which SPI) is the agent's; this file only applies them.
import { AllowedIps } from '../net/allowed-ips.js';
import { Slab } from '../util/slab.js';
import { eachOf, listOf, oneOrMore, type OneOrMore } from '../util/one-or-more.js';
import { formatIp, parseIp } from '../net/cidr.js';
import {
  createInboundSa, createOutboundSa, holdsTransform, InboundSaTable, releaseSa, SaOrigin, SaSlabs, type InboundSa, type InboundSlot, type OutboundSa, type SaGcmTransform,
} from '../esp/security-association.js';
import { OutboundSequence, SEQ_EXHAUSTED, SEQ_NOT_RESERVED } from '../esp/sequence-store.js';
import { markEntryText, replayMarkId, replayMarkSpi, sequenceMarkId } from '../esp/sequence-mark-file.js';
import { SequenceMarkWriter } from '../esp/sequence-mark-writer.js';
import { acceptEsp, acceptOpenedEsp, espSequence, newDropCounters, openEsp, XFRM_STAT_NAMES, type EspDropCounters } from '../esp/esp-decoder.js';
import { encodeEsp, frameEspGcm } from '../esp/esp-encoder.js';
import {
  ESP_GCM_PREFIX, ESP_HEADER_LENGTH, GCM_NONCE_AAD_LENGTH, espEncryptedLength, nextHeaderFor, readEspSpi, writeGcmNonceAad,
} from '../esp/esp-packet.js';
import { describeTransform, packedSa, packTransforms, type EspTransform } from '../esp/esp-transform.js';
import { EspTableDigest } from './esp-table-digest.js';
import { classifyUdpEncap, ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { AeadBatch, AeadKey } from './aead-batch.js';
import { AeadContexts } from './aead-contexts.js';
import { PacketBatch } from './packet-batch.js';
import { SinglePacketWriter } from './single-packet-writer.js';
import { TUN_YIELD_EVERY, type TunDevice } from './tun-device.js';
import { UDP_GRO_MAX_SEGMENTS, UDP_GRO_SLOT, type UdpSocket } from './udp-socket.js';
import type { DatapathEngine } from './engine.js';
import type {
  EspEngineCounters, EspEngineInit, EspEngineState, EspEngineStatus, EspPeerSpec, EspProtocol, EspSaSpec, EspSaState, EspSaStatus, EspStatePeer, EspStateSa, RequestOf, AnyReplyOf,
} from './messages.js';
import { VeilError } from '../util/errors.js';

/**
 * A peer, by its tunnel IP. Not its name (a string of its own, 40 B a peer): nothing here needs it;
 * the agent names the peers of a status (IpsecMode.engineStatus).
 */
interface PeerState extends InboundSlot {
  ip: string;
  /**
   * Its address as bytes (4 or 16): a slot of the engine's slab for its family (ipSlab()), an IPv4
   * address's slot as it is, an IPv6 one's as ~slot (negative: the family without a field, 8 B). A
   * typed array of its own was ~210 B a peer with its buffer, a view of the slot ~96 B, the chunk
   * and offset as fields 16 B.
   */
  ipSlot: number;
  /** One SA per key in force (one, two during a rotation): not a Map of its own per peer (listOf() reads it). */
  outbound: OneOrMore<OutboundSa>;
  active: OutboundSa | null;
  /**
   * Its allowed IPs as configured (the trie answers by address; this answers by peer without a
   * walk): each one it owns as its trie handle (AllowedIps.insert: a small integer, not a string of
   * 32 B a peer) when the trie's text of it is the one given, else (not owned: another peer took it;
   * or given in another spelling) the text as given. PrefixRef.
   */
  prefixes: OneOrMore<PrefixRef>;
}

/** An allowed IP as a peer lists it (PeerState.prefixes): a trie handle, only while the peer owns it, or its text. */
type PrefixRef = number | string;

const TX_HEADROOM = 48; // nonce (12) + AAD (12) at the slot start, ESP header + IV (16) before the packet
const TX_TAILROOM = 48; // padding (<= 3), pad length, next header, ICV (<= 16)
const BATCH = 128;
const SLOT = 2048;
/** Receive slots with UDP GRO: each takes a coalesced super-datagram of up to 64 segments. */
const GRO_SLOTS = 4;
const RX_BATCH = UDP_GRO_MAX_SEGMENTS * GRO_SLOTS;
/**
 * Per receive op, 12 bytes of nonce (salt || IV) and 12 of AAD (SPI || seq-hi || seq-lo). GRO
 * segments sit back to back with no room between them, so these live in a side area: the headroom
 * of slot 0 (every slot gets the same headroom; the kernel writes only after it).
 */
const RX_SIDE = GCM_NONCE_AAD_LENGTH * RX_BATCH;

/** An inbound SA's replay mark to write: the SA, its next mark, and the top it was computed at. */
type MovedMark = [sa: InboundSa, mark: number, top: number];

/**
 * An SA's native AES-GCM context (~2.2 KB of malloc) is kept only while the SA carries traffic.
 * The health prober reaches every peer every 10-50 s (health-prober.ts), so an agent that kept a
 * context per SA held one per peer: ~11 MB at 5,000 peers. A packet of an SA whose previous packet
 * is older than AEAD_HOT_MS (a probe, the first packet of a flow) is sealed or opened with a
 * context made for its batch and freed right after it (~1.5 µs; glibc reuses the chunks, so RSS
 * does not grow); a second packet within AEAD_HOT_MS (in the same batch too) gives the SA a
 * context of its own, freed after AEAD_IDLE_MS without a packet.
 */
export const AEAD_HOT_MS = 2_000;
export const AEAD_IDLE_MS = 10_000;
/** The receive path's TUN writes: AEAD-authenticated, so TCP runs merge (GRO-like); one object, not one a batch. */
const RX_WRITE = { checksumsTrusted: true, coalesce: true, yieldEvery: TUN_YIELD_EVERY } as const;
/** Replay mark ids kept (EspEngine.replayIds): a few KB at most, whatever the peers. */
const REPLAY_IDS = 256;

function gcmAlgorithm(keyLength: number): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  return keyLength === 16 ? 'aes-128-gcm' : keyLength === 24 ? 'aes-192-gcm' : 'aes-256-gcm';
}

export class EspEngine implements DatapathEngine<EspProtocol> {
  private readonly allowed = new AllowedIps<PeerState>();
  private readonly peers = new Map<string, PeerState>();
  /** The inbound SAs, each peer's in its state (`inbound`): a source without a peer has none. */
  private readonly inbound = new InboundSaTable(this.peers);
  private inboundSas = 0;
  /** The digest made since the last peer update (undefined: none yet); see digest(). */
  private heldDigest?: string;
  private outboundSas = 0;
  private readonly inboundBySpi = new Map<number, number>();
  /** The set of SPIs in force moved (or this is the first configuration): purge stale replay marks. */
  private spisMoved = true;
  /** The native contexts of the SAs that carry traffic (AEAD_HOT_MS, AEAD_IDLE_MS); a lone packet's for its batch only. */
  private readonly contexts: AeadContexts<OutboundSa | InboundSa>;
  private readonly aeadIdleMs: number;
  private sweepAt = 0;
  /**
   * Wall-clock ms less the engine clock (performance.now(), the `now` the worker loop passes): SA
   * use times are wall-clock, and a batch reads it as now + this, not Date.now(), which is a V8
   * runtime call (~7 % of a lone packet's fromNetwork() in a profile, and it allocates a
   * HeapNumber); WireGuard's path reads no second clock. Set again at every tick() (at least every
   * aeadIdleMs / 2), so a clock step or slew shows within that.
   */
  private wallOffset = Date.now() - performance.now();
  /**
   * A replay mark due ahead of need (refillDue), written at the end of the worker's turn by tick()
   * rather than in the packet's path: the marks' ids, their JSON and the submit took tens of µs,
   * once a second per busy tunnel, before the packet reached the TUN and before its answer (a
   * ping's echo reply) went back out. The packet itself is covered by the durable mark already.
   * The packet path only notes it, without a branch (replayDurable()); tick() decides.
   */
  private refillSa: InboundSa | null = null;
  /** The noted refill's sequence number [0] and wall-clock ms [1] (a typed array: no field representation to change). */
  private readonly refillAt = new Float64Array(2);
  /** Every SA's key material and replay window: slab slots, wiped when the SA retires. */
  private readonly slabs = new SaSlabs();
  /** Every peer's address as bytes (4 or 16), for the sends: by family (ipSlab()). */
  private readonly ip4 = new Slab((n) => new Uint8Array(n), 4);
  private readonly ip6 = new Slab((n) => new Uint8Array(n), 16);
  private closed = false;
  /**
   * The marks file's entries but those of the outbound SAs in force: each of those holds its own
   * (OutboundSequence.mark), and its id is made when the file is written (marksText), not kept (a
   * string and a map entry were ~95 B a peer). An SA takes its entry out when it is made and puts
   * it back when it retires (retireOutbound).
   */
  private readonly marks: Map<string, number>;
  /** Writes the marks file on a thread of its own; a mark counts once its write ended well. */
  private readonly writer: SequenceMarkWriter;
  /**
   * Sequence marks being written: the SA and the write's generation. The mark is the SA's own
   * (`sequence.mark`: its pending one, which stays until the write ends): an object of the two was
   * 40 B an SA more while 5,000 new SAs' first blocks were written.
   */
  private readonly outPending = new Map<OutboundSa, number>();
  /**
   * The replay mark ids of the SAs whose marks were written lately: a tunnel's refills write the
   * same few busy SAs' marks again and again, and the id's hash of the key took ~40 % of a cold
   * refill (~190 µs, between a ping and its answer: lat31). At most REPLAY_IDS of them, not one per
   * SA (a string per SA was ~90 B a peer: replayIdOf()).
   */
  private readonly replayIds = new Map<InboundSa, string>();
  /** Replay marks being written, with the top and count they were computed at (ReplayMark.persisted). */
  private readonly inPending = new Map<InboundSa, { mark: number; top: number; packets: number; nowMs: number; gen: number }>();
  private readonly tx = new PacketBatch({ capacity: BATCH, slotSize: SLOT, headroom: TX_HEADROOM, tailroom: TX_TAILROOM });
  private readonly rx: PacketBatch;
  private readonly aead = new AeadBatch(RX_BATCH);
  private readonly single: SinglePacketWriter;
  private readonly scratch = new Uint8Array(SLOT);
  private readonly rxIndex = new Int32Array(RX_BATCH);
  private readonly rxSa: (InboundSa | null)[] = new Array(RX_BATCH).fill(null);
  private readonly rxSeq = new Float64Array(RX_BATCH);
  private readonly rxCipherLength = new Int32Array(RX_BATCH);
  private readonly srcNames = new Map<number, string>();
  readonly drops: EspDropCounters = newDropCounters();
  readonly counters: EspEngineCounters = {
    txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, noRoute: 0, noOutboundSa: 0, sourceNotAllowed: 0,
    malformed: 0, tooBig: 0, sendFailed: 0, sequenceWait: 0, sequenceExhausted: 0, replayMarkFailed: 0,
  };

  /** A key's copy for its native context (contexts' make): one buffer per key length, wiped after each use. */
  private readonly keyScratches = new Map<number, Buffer>();

  private keyScratch(length: number): Buffer {
    let b = this.keyScratches.get(length);
    if (b === undefined) this.keyScratches.set(length, b = Buffer.alloc(length));
    return b;
  }

  /** ESP in UDP: the peers' port 4500 (ours too). Raw ESP (IP protocol 50): no port, and no non-ESP markers. */
  private readonly peerPort: number;
  private readonly rawEsp: boolean;

  constructor(private readonly init: EspEngineInit, private readonly tun: TunDevice, private readonly udp: UdpSocket) {
    this.rawEsp = udp.describe().rawEsp === true;
    this.peerPort = this.rawEsp ? 0 : ESP_IN_UDP_PORT;
    this.aeadIdleMs = init.aeadIdleMs ?? AEAD_IDLE_MS;
    const hotMs = init.aeadHotMs ?? AEAD_HOT_MS;
    this.contexts = new AeadContexts({
      make: (sa) => {
        const t = sa.transform;
        if (t.kind !== 'aead') throw new VeilError('ESP_INTERNAL', 'not an AEAD SA');
        // A copy (handing the SA's own key to native code would move it off the JS heap,
        // security-association.ts) into a buffer kept for it and wiped after: a probe's SA makes
        // a context for its lone packet each time (~200 a second at 5,000 peers, acks included),
        // and a view and a buffer of each key were garbage every time.
        const len = t.keyLength, key = this.keyScratch(len), m = t.material, at = t.at;
        for (let i = 0; i < len; i++) key[i] = m[at + i]!;
        try {
          return AeadKey.createHandle(gcmAlgorithm(len), key, t.icvLength, sa.direction === 'out' ? 'seal' : 'open');
        } finally {
          key.fill(0);
        }
      },
      // Asked before the packet counts as a use: the SA's use time (wall-clock) is its previous packet's.
      keeps: (sa) => Date.now() - sa.useTimeMs <= hotMs,
      idleMs: this.aeadIdleMs,
    });
    this.marks = new Map(Object.entries(init.marks ?? {}));
    this.writer = new SequenceMarkWriter(init.marksFile, () => this.marksText());
    this.single = new SinglePacketWriter(tun, init.mtu);
    this.rx = udp.gro
      ? new PacketBatch({ capacity: RX_BATCH, slotSize: RX_SIDE + UDP_GRO_SLOT, slots: GRO_SLOTS, headroom: RX_SIDE })
      : new PacketBatch({ capacity: RX_BATCH, slotSize: RX_SIDE + SLOT, slots: BATCH, headroom: RX_SIDE });
    // A handover: the SAs of the datapath before (which stopped before exporting), their sequences and windows.
    const r = init.resume;
    if (r) this.updatePeers(r.state.peers.map(fromStatePeer), [], new Map(r.state.sas.map((x) => [saStateKey(x.direction, x.spi, x.peer), x])));
  }

  // ---- sequence marks: a block is durable before any of its numbers is used --------------------

  /**
   * Asks for the SA's next block when its sequence asks for one (early: less than half a block
   * left), written off the packet path; takeSequence() waits for it only if the block ran out.
   * Called after every packet: no allocation unless a mark is due.
   */
  private reserve(sa: OutboundSa): void {
    const mark = sa.sequence.persistDue();
    if (mark === undefined) return;
    this.outPending.set(sa, this.writer.submit());
  }

  /**
   * reserve() for many SAs with one write of the marks file (new peers arrive in batches); in the
   * same write, the first replay marks of `firstMarks` (the new inbound SAs). Left to its first
   * packet, each one waited for a write of its own, the whole file each time, on the packet path:
   * with 5,000 peers that answer the health prober, 5,000 such writes within a minute after the
   * peers came (a worker busy for 70-90 s) and after a rotation (22 % of the real pair's pings
   * lost meanwhile; the scale bench with answering IPsec peers, session 30).
   */
  private reserveAll(sas: OutboundSa[], firstMarks: InboundSa[], nowMs: number): void {
    const due: OutboundSa[] = [];
    for (const sa of sas) if (sa.sequence.persistDue() !== undefined) due.push(sa);
    const first: MovedMark[] = [];
    for (const sa of firstMarks) {
      const top = sa.replayTop, mark = sa.replayMark.next(top, 0, nowMs); // the least lead: nothing came under this key yet
      if (mark > sa.replayMark.durable) first.push([sa, mark, top]);
    }
    this.submitMarks(due, first, nowMs);
  }

  /**
   * One write of the marks file for the outbound SAs' next blocks (`due`) and the inbound SAs'
   * replay marks (`moved`); each counts once its write has ended (settleMarks).
   */
  private submitMarks(due: OutboundSa[], moved: MovedMark[], nowMs: number): void {
    if (!due.length && !moved.length) return;
    for (const [x, mark] of moved) this.marks.set(this.replayId(x), mark);
    const gen = this.writer.submit();
    for (const sa of due) this.outPending.set(sa, gen);
    for (const [x, mark, top] of moved) {
      this.inPending.set(x, { mark, top, packets: x.packets, nowMs, gen });
      x.replayMark.writing(); // no packet notes a refill of it meanwhile
    }
  }

  /** The SA's block ran out before its write ended (or was never asked for): ask, and wait for the write. */
  private awaitBlock(sa: OutboundSa): void {
    this.reserve(sa);
    const gen = this.outPending.get(sa);
    if (gen !== undefined) this.settleMarks(gen);
  }

  /**
   * The marks file's text: the marks kept, and each outbound SA's in force (its id made now). One
   * loop, not a generator into encodeSequenceMarks(): a refill runs this cold, between a ping and its
   * answer in a lab, and the generator's resumes and an array an entry were ~55 µs of a ~100 µs refill (lat37).
   */
  private marksText(): string {
    let out = '{', sep = '';
    for (const [id, mark] of this.marks) { out += sep + markEntryText(id, mark); sep = ','; }
    for (const p of this.peers.values()) {
      const o = p.outbound, n = Array.isArray(o) ? o.length : 1;
      for (let i = 0; i < n; i++) {
        const sa = Array.isArray(o) ? o[i]! : o, mark = sa.sequence.mark; // no array for the one SA (listOf)
        if (mark > 0) { out += sep + markEntryText(sequenceMarkId(sa.spi, sa.src, sa.dst), mark); sep = ','; }
      }
    }
    return out + '}\n';
  }

  /** An outbound SA leaves its peer: its mark goes back among the kept ones (a later SA of its key goes on above it). */
  private retireOutbound(sa: OutboundSa): void {
    const id = sequenceMarkId(sa.spi, sa.src, sa.dst), mark = sa.sequence.mark;
    if (mark > (this.marks.get(id) ?? 0)) this.marks.set(id, mark);
    this.retire(sa);
    this.outboundSas--;
  }

  /**
   * Applies the marks whose writes have ended: durable ones may be used, failed ones are asked for
   * again. waitFor: block until that write has ended (a packet needs its mark now).
   */
  private settleMarks(waitFor = 0): void {
    if (this.outPending.size === 0 && this.inPending.size === 0) return;
    const w = this.writer;
    w.poll(waitFor);
    for (const [sa, gen] of this.outPending) {
      const o = w.outcome(gen);
      if (o === 'pending') continue;
      if (o === 'written') sa.sequence.persisted(sa.sequence.mark); else sa.sequence.persistFailed(); // mark: the pending one (persistDue())
      this.outPending.delete(sa);
    }
    for (const [sa, p] of this.inPending) {
      const o = w.outcome(p.gen);
      if (o === 'pending') continue;
      if (o === 'written') sa.replayMark.persisted(p.mark, p.top, p.packets, p.nowMs); else sa.replayMark.writeFailed();
      this.inPending.delete(sa);
    }
  }

  /**
   * Makes `seq` acceptable on `sa` across a crash: a replay mark above it is durable before it is
   * accepted (replay-mark.ts). The next mark is written ahead of need, once 3/4 of the lead is used,
   * so a packet waits for a write only when its tunnel outran the lead (or at its first packet).
   * False: the write failed, drop it.
   */
  private replayDurable(sa: InboundSa, seq: number, nowMs: number): boolean {
    const m = sa.replayMark;
    if (seq <= m.durable) {
      // Only noted, and every load runs for every packet: behind && the inPending test first ran
      // when the first refill was due, after TurboFan had compiled fromNetwork(), and deoptimized
      // it (lab --trace-deopt, fromNetwork @26). tick() tests whether the mark is worth writing.
      const due = m.refillDue(seq), at = this.refillAt;
      this.refillSa = due ? sa : this.refillSa;
      at[0] = due ? seq : at[0]!;
      at[1] = due ? nowMs : at[1]!;
      return true;
    }
    let p = this.inPending.get(sa);
    if (!p || p.mark < seq) {
      this.writeReplayMarks(sa, seq, nowMs);
      p = this.inPending.get(sa);
    }
    if (p) this.settleMarks(p.gen);
    if (seq <= m.durable) return true;
    this.counters.replayMarkFailed++;
    return false;
  }

  /**
   * Queues a write of the replay marks that `seq` on `sa` moves, and every other busy SA's with it,
   * so a busy cluster writes about once per lead, not once per tunnel.
   */
  private writeReplayMarks(sa: InboundSa, seq: number, nowMs: number): void {
    const moved: MovedMark[] = [];
    for (const x of this.inbound.all()) {
      // Its next mark is on its way; or no packet yet (no mark to move). An SA whose window went
      // idle (idleWindow) moves too: skipped, each slow tunnel (a health probe every 50 s) wrote
      // its own refill every 6 packets, the whole file each time (~17 writes a second at 5,000 peers).
      if (x !== sa && (this.inPending.has(x) || (x.packets === 0 && !x.replayLive))) continue;
      const top = x === sa ? seq : x.replayTop;
      if (!x.replayMark.movedSince(top)) continue;
      const mark = x.replayMark.next(top, x.packets, nowMs);
      if (mark > x.replayMark.durable) moved.push([x, mark, top]);
    }
    this.submitMarks([], moved, nowMs);
  }

  /** The SA's replay mark id, kept while it is among the REPLAY_IDS written last (replayIds). */
  private replayId(sa: InboundSa): string {
    let id = this.replayIds.get(sa);
    if (id === undefined) {
      if (this.replayIds.size >= REPLAY_IDS) this.replayIds.clear();
      this.replayIds.set(sa, id = replayIdOf(sa));
    }
    return id;
  }

  private takeSequence(sa: OutboundSa): number {
    let seq = sa.sequence.take();
    if (seq === SEQ_NOT_RESERVED) {
      this.awaitBlock(sa);
      seq = sa.sequence.take();
    }
    return seq;
  }

  /** The SA left every table: its native key goes, its key material is wiped and its slots go back. */
  private retire(sa: OutboundSa | InboundSa): void {
    this.contexts.release(sa);
    if (sa.direction === 'in') this.replayIds.delete(sa);
    releaseSa(sa);
  }

  // ---- TUN -> network ---------------------------------------------------------------------------

  fromTunnel(now: number): number { // SA use times are wall-clock (wallOffset); the contexts' idle times are the engine clock's
    const b = this.tx;
    const n = this.tun.readBatch(b);
    if (n === 0) return 0;
    if (this.outPending.size !== 0) this.settleMarks();
    const buf = b.buf, aead = this.aead, mtu = this.init.mtu;
    const wall = Math.floor(now + this.wallOffset); // SA use time (wallOffset)
    aead.clear();
    let out = 0;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      const nextHeader = nextHeaderFor(buf, off, len);
      if (nextHeader === 0) { this.counters.malformed++; continue; }
      const peer = this.allowed.lookupDestination(buf, off);
      if (!peer) { this.counters.noRoute++; continue; }
      const sa = peer.active;
      if (!sa) { this.counters.noOutboundSa++; continue; }
      if (len > mtu) { this.answerTooBig(off, len); continue; }
      const t = sa.transform;
      if (t.kind !== 'aead') { this.sendSingle(sa, peer, off, len); continue; }
      const seq = this.takeSequence(sa);
      if (seq === SEQ_NOT_RESERVED) { this.counters.sequenceWait++; continue; }
      if (seq === SEQ_EXHAUSTED) { this.counters.sequenceExhausted++; continue; }
      const nonceAad = off - TX_HEADROOM;
      const key = this.contexts.get(sa, 'seal', now); // before framing counts the packet as a use
      const sealed = frameEspGcm(buf, off, len, nextHeader, sa, t, seq, buf, nonceAad, wall);
      aead.addHandle(key, off, sealed, nonceAad, nonceAad + 12, 12);
      const at = peer.ipSlot, family = at < 0 ? 6 : 4, ipSlot = at < 0 ? ~at : at, ips = this.ipSlab(family);
      b.setPeer(out, ips.array(ipSlot), family, this.peerPort, ips.offset(ipSlot));
      b.offs[out] = off - ESP_GCM_PREFIX;
      b.lens[out] = ESP_GCM_PREFIX + sealed + t.icvLength;
      out++;
      this.counters.txBytes += len;
      this.reserve(sa);
    }
    if (out > 0) {
      aead.seal(buf);
      this.contexts.endBatch();
      for (let j = 0; j < out; j++) if (!aead.ok[j]) b.lens[j] = -1;
      const sent = this.udp.sendBatch(b, out);
      if (sent < out) this.counters.sendFailed += out - sent;
      this.counters.txPackets += sent;
    }
    return n;
  }

  /** The slow path for CBC+HMAC SAs: one packet through node:crypto. */
  private sendSingle(sa: OutboundSa, peer: PeerState, off: number, len: number): void {
    if (sa.sequence.durableEnd <= sa.sequence.last) this.awaitBlock(sa);
    const r = encodeEsp(sa, this.tx.buf.subarray(off, off + len), this.scratch, Date.now()); // SA use time is wall-clock
    if (!r.ok) { this.counters.sequenceWait++; return; }
    const at = peer.ipSlot;
    if (!this.udp.sendTo(this.scratch, this.ipSlab(at < 0 ? 6 : 4).view(at < 0 ? ~at : at), this.peerPort, 0, r.length)) this.counters.sendFailed++;
    else { this.counters.txPackets++; this.counters.txBytes += len; }
    this.reserve(sa);
  }

  /** The slab of the addresses of a family (PeerState.ipSlot). */
  private ipSlab(family: 4 | 6): Slab<Uint8Array> {
    return family === 4 ? this.ip4 : this.ip6;
  }

  private answerTooBig(off: number, len: number): void {
    this.counters.tooBig++;
    this.single.answerTooBig(this.tx.buf, off, len);
  }

  // ---- network -> TUN ---------------------------------------------------------------------------

  private sourceName(i: number): string {
    const b = this.rx;
    const a = 16 * i;
    if (b.families[i] === 4) {
      const key = ((b.addrs[a]! << 24) | (b.addrs[a + 1]! << 16) | (b.addrs[a + 2]! << 8) | b.addrs[a + 3]!) >>> 0;
      let s = this.srcNames.get(key);
      if (!s) {
        if (this.srcNames.size > 4096) this.srcNames.clear();
        s = `${b.addrs[a]}.${b.addrs[a + 1]}.${b.addrs[a + 2]}.${b.addrs[a + 3]}`;
        this.srcNames.set(key, s);
      }
      return s;
    }
    return formatIp(b.addrs.subarray(a, a + 16), 6);
  }

  /** Packets i and j of the receive batch came from the same address (ports do not pick SAs). */
  private sameSender(i: number, j: number): boolean {
    const b = this.rx, f = b.families[i]!;
    if (f !== b.families[j]) return false;
    const a = 16 * i, c = 16 * j, len = f === 4 ? 4 : 16;
    for (let k = 0; k < len; k++) if (b.addrs[a + k] !== b.addrs[c + k]) return false;
    return true;
  }

  fromNetwork(now: number): number {
    const b = this.rx;
    const n = this.udp.recvBatch(b);
    if (n === 0) return 0;
    if (this.inPending.size !== 0) this.settleMarks();
    const buf = b.buf, aead = this.aead;
    aead.clear();
    let ops = 0, lastIndex = -1, lastSpi = 0;
    let lastSa: InboundSa | undefined;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      const kind = this.rawEsp ? (len < 8 ? 'truncated' : 'esp') : classifyUdpEncap(buf, off, len);
      if (kind !== 'esp') { this.drops[kind]++; continue; }
      const spi = readEspSpi(buf, off);
      // GRO segments of one datagram share the sender: look the SA up once per run. Every compare
      // runs for every packet (the first compares its sender with itself): behind || they first
      // ran at the first batch of two, after TurboFan had compiled this, and deoptimized it (lab
      // --trace-deopt, 'Insufficient type feedback for compare operation').
      const first = lastIndex < 0, sameSpi = spi === lastSpi;
      const sameSource = this.sameSender(first ? i : lastIndex, i);
      if (first || !sameSpi || !sameSource) {
        lastSa = this.inbound.lookup(this.sourceName(i), spi);
        lastSpi = spi;
      }
      lastIndex = i;
      const sa = lastSa;
      if (sa && sa.transform.kind !== 'aead') { this.receiveSingle(sa, i); continue; }
      const seq = espSequence(sa, buf, off, len, this.drops);
      if (typeof seq === 'string') continue;
      const t = sa!.transform as SaGcmTransform; // espSequence() passes only a packet with an SA, an AES-GCM one here
      const nonceAad = GCM_NONCE_AAD_LENGTH * ops; // side area (slot 0's headroom)
      writeGcmNonceAad(buf, nonceAad, t.material, t.saltAt, buf, off + ESP_HEADER_LENGTH, spi, seq);
      const encrypted = espEncryptedLength(t, len);
      aead.addHandle(this.contexts.get(sa!, 'open', now), off + ESP_GCM_PREFIX, encrypted, nonceAad, nonceAad + 12, 12);
      this.rxIndex[ops] = i;
      this.rxSa[ops] = sa!;
      this.rxSeq[ops] = seq;
      this.rxCipherLength[ops] = encrypted;
      ops++;
    }
    if (ops === 0) return n;
    aead.open(buf);
    this.contexts.endBatch();
    const wall = Math.floor(now + this.wallOffset); // SA use time (wallOffset)
    let out = 0;
    for (let j = 0; j < ops; j++) {
      const sa = this.rxSa[j]!;
      this.rxSa[j] = null;
      const plain = b.offs[this.rxIndex[j]!]! + ESP_GCM_PREFIX;
      const seq = this.rxSeq[j]!, authentic = aead.ok[j] === 1;
      if (authentic && !this.replayDurable(sa, seq, wall)) continue;
      const payload = acceptEsp(sa, seq, authentic, buf, plain, this.rxCipherLength[j]!, wall, this.drops);
      if (typeof payload === 'string' || !this.sourceAllowed(buf, plain, sa)) continue;
      b.offs[out] = plain;
      b.lens[out] = payload;
      out++;
      this.counters.rxPackets++;
      this.counters.rxBytes += payload;
    }
    if (out > 0) this.tun.writeBatch(b, out, RX_WRITE);
    return n;
  }

  /** The inner source must belong to the node that sent the packet (its allowed IPs). */
  private sourceAllowed(buf: Uint8Array, off: number, sa: InboundSa): boolean {
    const owner = this.allowed.lookupSource(buf, off);
    if (!owner || owner.ip !== sa.src) { this.counters.sourceNotAllowed++; return false; }
    return true;
  }

  private receiveSingle(sa: InboundSa, i: number): void {
    const b = this.rx;
    const packet = b.buf.subarray(b.offs[i]!, b.offs[i]! + b.lens[i]!);
    const opened = openEsp(sa, packet, this.drops);
    if (typeof opened === 'string') return;
    const wall = Date.now(); // SA use time is wall-clock
    if (opened.plain && !this.replayDurable(sa, opened.seq, wall)) return;
    const r = acceptOpenedEsp(sa, opened, packet, wall, this.drops);
    if (!r.ok) return;
    if (!this.sourceAllowed(r.inner, 0, sa)) return;
    this.single.write(r.inner, r.inner.length);
    this.counters.rxPackets++;
    this.counters.rxBytes += r.inner.length;
  }


  /** Frees the native contexts and replay windows of SAs idle for aeadIdleMs (rotation and expiry are the agent's). */
  tick(now: number): void {
    this.wallOffset = Date.now() - performance.now(); // not from `now`: a test may pass a made-up one here
    this.settleMarks();
    const sa = this.refillSa;
    if (sa) {
      this.refillSa = null;
      const seq = this.refillAt[0]!, nowMs = this.refillAt[1]!;
      // Not while its mark is being written (a packet that outran the lead asked, or an earlier
      // refill), nor for an SA gone, nor when the mark would not move.
      if (!this.inPending.has(sa) && this.inbound.lookup(sa.src, sa.spi) === sa && sa.replayMark.next(seq, sa.packets, nowMs) > sa.replayMark.durable) {
        this.writeReplayMarks(sa, seq, nowMs);
      }
    }
    this.contexts.sweep(now);
    if (now < this.sweepAt) return;
    this.sweepAt = now + this.aeadIdleMs / 2;
    const idleSince = Date.now() - this.aeadIdleMs; // SA use times are wall-clock
    // Replay windows of inbound SAs idle as long go too (InboundSa.idleWindow: the top stays, ~180 B
    // an SA); the next packet makes one. Not while the SA's mark is being written, nor for an SA made
    // (or handed over, with its exact window) within that time.
    this.inbound.forEach((sa) => {
      if (sa.replayLive && sa.useTimeMs < idleSince && sa.addTimeMs < idleSince && !this.inPending.has(sa)) sa.idleWindow();
    });
  }

  nextDeadline(): number {
    return this.refillSa ? -Infinity : this.sweepAt; // a mark due: tick() at the end of this turn
  }

  // ---- control ----------------------------------------------------------------------------------

  control(req: RequestOf<EspProtocol>): AnyReplyOf<EspProtocol> {
    if (req.type === 'updatePeers' || req.type === 'setPeers') this.heldDigest = undefined;
    switch (req.type) {
      case 'updatePeers': return this.updatePeers(req.upsert, req.remove);
      case 'setPeers': return this.setPeers(req.peers);
      case 'digest': return { digest: req.full || this.heldDigest === undefined ? (this.heldDigest = this.digest()) : this.heldDigest };
      case 'status': return this.status(req.showKeys === true, req.peer);
      default: throw new VeilError('BAD_REQUEST', `unknown datapath request '${(req as { type: string }).type}'`);
    }
  }

  /** Makes peers, SAs and allowed IPs exactly `specs`, keeping live SAs (sequence, replay) as they are. */
  private setPeers(specs: EspPeerSpec[]): { peers: number; sas: number } {
    const wanted = new Set(specs.map((s) => s.ip));
    const strays = new Set([...this.peers.keys(), ...this.inbound.all().map((sa) => sa.src)]);
    const r = this.updatePeers(specs, [...strays].filter((ip) => !wanted.has(ip)));
    this.dropUnownedPrefixes();
    return r;
  }

  /** Trie entries no peer lists (drift a digest shows, which no peer's update would remove). */
  private dropUnownedPrefixes(): void {
    this.allowed.removeUnlisted((visit) => { for (const st of this.peers.values()) eachOf(st.prefixes, (p) => visit(st, p)); });
  }

  /**
   * Removes peers by IP (their SAs with them), then adds or updates the given ones, keeping live SAs
   * (sequence, replay) whose key is unchanged: the cost is that of the peers named.
   */
  private updatePeers(upsert: EspPeerSpec[], remove: string[], resumed?: Map<string, EspSaState>): { peers: number; sas: number } {
    const now = Date.now(), made = new SaOrigin(now, this.init.localIp, this.slabs); // what the SAs this update makes share
    const created: OutboundSa[] = [];
    const firstMarks: InboundSa[] = [];
    for (const ip of remove) {
      for (const sa of this.inbound.ofSource(ip)) this.dropInbound(sa); // before its peer state, where they hang
      const st = this.peers.get(ip);
      if (st) {
        this.allowed.releaseRefs(st, listOf(st.prefixes));
        for (const sa of listOf(st.outbound)) this.retireOutbound(sa);
        this.peers.delete(ip);
        this.ipSlab(st.ipSlot < 0 ? 6 : 4).release(st.ipSlot < 0 ? ~st.ipSlot : st.ipSlot);
      }
    }
    for (const s of upsert) {
      let st = this.peers.get(s.ip);
      if (!st) {
        const ip = parseIp(s.ip);
        const slab = this.ipSlab(ip.family), slot = slab.take();
        slab.array(slot).set(ip.bytes, slab.offset(slot));
        st = { ip: s.ip, ipSlot: ip.family === 4 ? slot : ~slot, outbound: [], active: null, prefixes: [], inbound: undefined };
        this.peers.set(s.ip, st);
      }
      const kept: OutboundSa[] = [];
      for (const sa of listOf(st.outbound)) {
        const keep = listOf(s.outbound).find((x) => x.spi === sa.spi && holdsTransform(sa.transform, x));
        if (keep) kept.push(sa); else this.retireOutbound(sa);
      }
      for (const o of listOf(s.outbound)) {
        if (kept.some((sa) => sa.spi === o.spi)) continue;
        const markId = sequenceMarkId(o.spi, this.init.localIp, st.ip), mark = this.marks.get(markId) ?? 0;
        // Handed over: go on right after the last number the stopped datapath sent (its block is durable).
        const r = resumed?.get(saStateKey('out', o.spi, st.ip));
        const sequence = r?.last !== undefined ? OutboundSequence.resume(r.last, mark) : new OutboundSequence(mark);
        const sa = createOutboundSa({ spi: o.spi, src: this.init.localIp, dst: st.ip, transform: o, nowMs: made, sequence }, this.slabs);
        if (r) { sa.bytes = r.bytes; sa.packets = r.packets; }
        this.marks.delete(markId); // the SA holds it now (made first: a failure leaves the entry in place)
        created.push(sa);
        kept.push(sa);
        this.outboundSas++;
      }
      st.outbound = oneOrMore(kept);
      for (const sa of this.inbound.ofSource(s.ip)) {
        if (!listOf(s.inbound).some((x) => x.spi === sa.spi && holdsTransform(sa.transform, x))) this.dropInbound(sa);
      }
      for (const x of listOf(s.inbound)) {
        if (this.inbound.lookup(s.ip, x.spi)) continue;
        const id = replayMarkId(x.spi, st.ip, this.init.localIp, x);
        // Handed over: the exact window (numbers below the top not yet seen stay acceptable, once).
        const r = resumed?.get(saStateKey('in', x.spi, st.ip));
        const sa = createInboundSa({ spi: x.spi, src: st.ip, dst: this.init.localIp, transform: x, nowMs: made, replayTop: this.marks.get(id) ?? 0, window: r?.replay }, this.slabs);
        if (r) { sa.bytes = r.bytes; sa.packets = r.packets; }
        // the mark's lead counts packets since its last write: from the handed-over count, not 0 (else a lead of up to 2^20 after a hitless restart, and a later crash dropped every fresh packet under it)
        if (r) sa.replayMark.persisted(sa.replayMark.durable, this.marks.get(id) ?? 0, r.packets, now);
        else firstMarks.push(sa);
        this.inbound.add(sa);
        this.countInbound(x.spi, +1);
      }
      st.active = kept.find((sa) => sa.spi === s.activeSpi) ?? null;
      const want = new Set(listOf(s.allowedIPs)); // listOf: a string is one prefix, not its characters
      const held: PrefixRef[] = [], handles: number[] = [];
      for (const p of want) held.push(this.hold(st, p, handles)); // add first, then remove: a prefix is never without an owner while it moves
      // those whose trie entry it did not just hold (one held again in another spelling stays)
      this.allowed.releaseRefs(st, this.allowed.refsOutside(listOf(st.prefixes), handles));
      st.prefixes = oneOrMore(held);
    }
    this.reserveAll(created, firstMarks, now);
    if (this.spisMoved) {
      // Replay marks of keys no longer in force can go; those of a peer that left stay, so that
      // its SAs come back (same key) with their top, not an empty window.
      this.spisMoved = false;
      for (const id of this.marks.keys()) {
        const spi = replayMarkSpi(id);
        if (spi !== undefined && !this.inboundBySpi.has(spi)) this.marks.delete(id);
      }
    }
    return { peers: this.peers.size, sas: this.inboundSas + this.outboundSas };
  }

  /**
   * The digest of what this engine holds (esp-table-digest.ts): equal to espSpecsDigest(specs) once
   * it holds exactly the specs. The trie is read per prefix a peer names, and a trie entry no peer
   * lists (a stray; setPeers drops them) spoils the digest.
   */
  private digest(): string {
    const d = new EspTableDigest();
    let owned = 0;
    for (const st of this.peers.values()) {
      d.peer(st.ip, st.active?.spi ?? 0);
      for (const sa of listOf(st.outbound)) d.sa('o', st.ip, sa.spi, sa.transform);
      for (const p of listOf(st.prefixes)) if (this.owns(st, p)) { d.prefix(this.allowed.textOf(p), st.ip); owned++; }
    }
    for (const sa of this.inbound.all()) d.sa('i', sa.src, sa.spi, sa.transform);
    if (owned !== this.allowed.size) d.stray(`${this.allowed.size - owned} allowed-ips entries no peer owns`);
    return d.value;
  }

  /** Counts inbound SAs per SPI: a key coming into force or leaving it is when old replay marks can go. */
  private countInbound(spi: number, delta: 1 | -1): void {
    const n = (this.inboundBySpi.get(spi) ?? 0) + delta;
    this.inboundSas += delta;
    if (n > 0 && this.inboundBySpi.has(spi)) { this.inboundBySpi.set(spi, n); return; }
    if (n > 0) this.inboundBySpi.set(spi, n); else this.inboundBySpi.delete(spi);
    this.spisMoved = true;
  }

  private dropInbound(sa: InboundSa): void {
    this.inbound.remove(sa.src, sa.spi);
    this.retire(sa);
    this.countInbound(sa.spi, -1);
  }

  /**
   * Maps the prefix to the peer (its handle added to `handles`); returns how the peer lists it
   * (PrefixRef): its handle when the trie spells it as given, else the text. A peer that owned it before lists it as text from now
   * on (a handle names a prefix only while its owner holds it: the node may go and come back as another).
   */
  private hold(st: PeerState, prefix: string, handles: number[]): PrefixRef {
    const before = this.allowed.get(prefix);
    const handle = this.allowed.insert(prefix, st);
    handles.push(handle);
    if (before !== undefined && before !== st) {
      const refs = listOf(before.prefixes), i = refs.indexOf(handle);
      if (i >= 0) { refs[i] = this.allowed.prefixAt(handle); before.prefixes = oneOrMore(refs); }
    }
    return this.allowed.prefixAt(handle) === prefix ? handle : prefix;
  }

  /** The peer owns the trie's entry of the prefix it lists (another peer may have taken it). */
  private owns(st: PeerState, p: PrefixRef): boolean {
    return this.allowed.valueOfRef(p) === st;
  }

  /**
   * peer: only that peer's SAs and entry, by tunnel IP (one peer of thousands, without listing them
   * all). Peers are named by their tunnel IP (PeerState: no names here).
   */
  private status(showKeys: boolean, peer?: string): EspEngineStatus {
    const describe = (sa: OutboundSa | InboundSa, peer: string, active: boolean): EspSaStatus => ({
      peer, direction: sa.direction, src: sa.src, dst: sa.dst, spi: sa.spi, mode: 'tunnel', encap: this.rawEsp ? 'none' : `espinudp ${ESP_IN_UDP_PORT}`,
      algorithm: describeTransform(sa.transform), icvBits: sa.icvLength * 8, replayWindow: sa.replayWindowSize, esn: true,
      transform: sa.transform.kind === 'aead' ? { aead: sa.transform.name } : { auth: sa.transform.auth, enc: sa.transform.enc },
      active, bytes: sa.bytes, packets: sa.packets, addTimeMs: sa.addTimeMs, useTimeMs: sa.useTimeMs,
      sequence: sa.direction === 'out' ? sa.sequence.last : sa.replayTop,
      ...(showKeys ? { key: keyHex(sa.transform) } : {}),
    });
    const sas: EspSaStatus[] = [];
    const peers = [...this.peers.values()].filter((p) => peer === undefined || p.ip === peer);
    for (const p of peers) for (const sa of listOf(p.outbound)) sas.push(describe(sa, p.ip, sa === p.active));
    const inbound = peer === undefined ? this.inbound.all() : peers.flatMap((p) => this.inbound.ofSource(p.ip));
    for (const sa of inbound) sas.push(describe(sa, sa.src, true));
    const xfrm: Record<string, number> = {};
    for (const [reason, count] of Object.entries(this.drops)) {
      const name = XFRM_STAT_NAMES[reason as keyof typeof XFRM_STAT_NAMES];
      if (name && count) xfrm[name] = (xfrm[name] ?? 0) + count;
    }
    return {
      sas, drops: { ...this.drops }, xfrmErrors: xfrm, counters: { ...this.counters },
      peerCount: this.peers.size, aeadContexts: this.contexts.count, marksPending: this.outPending.size + this.inPending.size,
      peers: peers.map((p) => ({ name: p.ip, ip: p.ip, activeSpi: p.active?.spi ?? 0, allowedIPs: listOf(p.prefixes).filter((x) => this.owns(p, x)).map((x) => this.allowed.textOf(x)) })),
      tun: this.tun.counters(), udp: this.udp.counters(),
    };
  }

  /** The peers as configured (the specs that make them again) and each SA's live numbers. */
  exportState(): EspEngineState {
    // Copies, a peer's keys packed in a buffer of its own: the SAs' key material is in slab chunks (a message would carry whole chunks) and close() wipes it.
    const peers: EspStatePeer[] = [...this.peers.values()].map((p) => {
      const inbound = this.inbound.ofSource(p.ip);
      const outbound = listOf(p.outbound);
      const packed = packTransforms([...outbound, ...inbound].map((sa) => sa.transform));
      const spec = (sa: OutboundSa | InboundSa, i: number) => ({ spi: sa.spi, transform: packed[i]! });
      return {
        // no name kept: the next agent's own specs name it (its first pass sends them)
        name: p.ip, ip: p.ip, allowedIPs: listOf(p.prefixes).map((x) => this.allowed.textOf(x)), outbound: outbound.map(spec), activeSpi: p.active?.spi ?? 0,
        inbound: inbound.map((sa, i) => spec(sa, outbound.length + i)),
      };
    });
    const sas: EspSaState[] = [];
    for (const p of this.peers.values()) {
      for (const sa of listOf(p.outbound)) sas.push({ direction: 'out', spi: sa.spi, peer: p.ip, last: sa.sequence.last, bytes: sa.bytes, packets: sa.packets });
    }
    for (const sa of this.inbound.all()) sas.push({ direction: 'in', spi: sa.spi, peer: sa.src, replay: sa.saveReplay(), bytes: sa.bytes, packets: sa.packets });
    return { peers, sas };
  }

  /** A clean stop: the exact replay tops replace the marks' leads, so the next start drops no fresh packet. */
  close(): void {
    if (this.closed) return; // its SAs' slots are released once
    this.closed = true;
    const inbound = this.inbound.all();
    if (inbound.length) {
      for (const sa of inbound) this.marks.set(replayIdOf(sa), sa.replayTop);
      this.writer.writeNow(); // failed: the marks' leads stay, still no replay
    }
    this.writer.close();
    for (const p of this.peers.values()) for (const sa of listOf(p.outbound)) this.retire(sa);
    for (const sa of this.inbound.all()) this.retire(sa);
  }
}

/**
 * The replay mark id of a live inbound SA (a hash of its keys): made when needed, at a write of its
 * marks or a clean stop, not kept (a string per SA and a weak map entry were ~90 B a peer).
 */
function replayIdOf(sa: InboundSa): string {
  return replayMarkId(sa.spi, sa.src, sa.dst, sa.transform);
}

/** A handed-over peer as this engine's specs carry it: each SA one object (EspStatePeer). */
function fromStatePeer(p: EspStatePeer): EspPeerSpec {
  const sa = (x: EspStateSa | EspSaSpec) => ('transform' in x ? packedSa(x.spi, x.transform) : x); // either shape: what the state holds is not checked by type
  return { ...p, outbound: oneOrMore(listOf(p.outbound).map(sa)), inbound: oneOrMore(listOf(p.inbound).map(sa)) };
}

function saStateKey(direction: 'in' | 'out', spi: number, peer: string): string {
  return `${direction} ${spi} ${peer}`;
}

/** Key material as tshark's ESP SA table wants it (key||salt for GCM; enc and auth for CBC). */
export function keyHex(t: EspTransform): { encryption: string; authentication?: string } {
  if (t.kind === 'aead') return { encryption: Buffer.concat([t.key, t.salt]).toString('hex') };
  return { encryption: Buffer.from(t.encKey).toString('hex'), authentication: Buffer.from(t.authKey).toString('hex') };
}
