// The WireGuard shell of the datapath: batches from the TUN device are routed by the allowed-ips
// trie, framed by the core and sealed natively, and sent; batches from the UDP socket are accepted
// by the core, opened natively, source-checked and written to the TUN device. Packet layout,
// handshakes, timers and every acceptance decision belong to the sans-I/O core (src/wireguard/);
// this file only does I/O and bookkeeping for it, without allocating per packet on the data path.
import { performance } from 'node:perf_hooks';
import { appendFileSync } from 'node:fs';
import { AllowedIps, type PrefixRef } from '../net/allowed-ips.js';
import { formatIp, parseIp } from '../net/cidr.js';
import { ipFamilyOf } from '../net/ip-packet.js';
import { Device, mapKey } from '../wireguard/device.js';
import type { Peer } from '../wireguard/peer.js';
import type { Keypair } from '../wireguard/keypair.js';
import type { Action } from '../wireguard/actions.js';
import { compactEndpoint, formatEndpoint, Ipv4Endpoint, plainEndpoint, sameEndpoint, type Endpoint } from '../wireguard/endpoint.js';
import { frameTransport, transportLength } from '../wireguard/transport.js';
import { transportCounter, transportNonceInPlace } from '../wireguard/messages.js';
import { MESSAGE_TRANSPORT_HEADER_SIZE as HEADER, MESSAGE_TRANSPORT_TYPE } from '../wireguard/constants.js';
import { AeadBatch, AeadKey } from './aead-batch.js';
import { AeadContexts } from './aead-contexts.js';
import { PacketBatch } from './packet-batch.js';
import { SinglePacketWriter } from './single-packet-writer.js';
import { SendQueue } from './send-queue.js';
import { TUN_YIELD_EVERY, type TunDevice } from './tun-device.js';
import { UDP_GRO_MAX_SEGMENTS, UDP_GRO_SLOT, type UdpSocket } from './udp-socket.js';
import type { DatapathEngine } from './engine.js';
import { exportSessions, importSessions } from '../wireguard/session-snapshot.js';
import { wholeMs } from '../wireguard/whole-ms.js';
import type { AnyReplyOf, RequestOf, WireGuardEngineCounters, WireGuardEngineInit, WireGuardEngineState, WireGuardEngineStatus, WireGuardPeerSpec, WireGuardPeerStatus, WireGuardProtocol } from './messages.js';
import { VeilError } from '../util/errors.js';
import { WireGuardTableDigest } from './wireguard-table-digest.js';

/** Bytes before a TUN packet: the 12-byte nonce at the slot start, then the 16-byte header. */
const TX_HEADROOM = 32;
/** Bytes after: padding (< 16) and the tag (16). */
const TX_TAILROOM = 32;
const RX_HEADROOM = 16;
const TAG = 16;
const BATCH = 128;
const SLOT = 2048;
/** Receive slots with UDP GRO (each up to 64 KiB), and descriptors for every segment they may hold. */
const GRO_SLOTS = 4;
const RX_BATCH = GRO_SLOTS * UDP_GRO_MAX_SEGMENTS;
/**
 * The core's own datagrams queued before a send: more than a tick fires at 5,000 peers (~10-15), in
 * 256 bytes each on average (an initiation is 148, a keepalive 32; a staged packet takes more).
 */
const SENDS_QUEUED = 64;
/**
 * How late a peer timer may fire, ms: the engine wakes for timers on a grid of this step, so the
 * timers that come due within one step fire in one tick (one wake-up, one walk of the peers), and
 * the cached earliest timer is refreshed at most this often. At 5,000 peers the health prober
 * keeps every session in use, and each of its ~100 acks a second arms a passive keepalive 10 s
 * later: fired one by one, each was a wake-up and two walks over every peer (~20 % of the worker's
 * samples; docs/performance-log.md, session 33). Linux's timer wheel lets WireGuard's 5-15 s timers
 * run 256-512 ms late; every timer armed is ≥ 1 s away (a persistent keepalive's least), so a
 * refresh this often still sees it before it is due. Never early: a timer fires at the first grid
 * step at or after its deadline.
 */
export const TIMER_SLACK_MS = 100;

/** What one rx batch accepted under one keypair: one hook call per keypair and batch. Pooled: kept by no keypair. */
class ReceivedRun {
  keypair: Keypair | null = null;
  bytes = 0;
  packets = 0;
  /** The sender of the batch's first packet under this keypair (roaming). */
  source: Endpoint | null = null;
}

/** Options of every received batch's TUN write (AEAD-authenticated: merge TCP runs, GRO-like). */
const RX_WRITE = { checksumsTrusted: true, coalesce: true, yieldEvery: TUN_YIELD_EVERY } as const;

/**
 * What the engine keeps of a peer, in one object under one map entry (five maps of the peers were
 * ~500 B a peer): its labels, its allowed IPs as configured, its transport packets each way, and
 * what the tx batch being built sends it.
 */
class PeerRecord {
  /** A name for status (the node). */
  name: string | undefined = undefined;
  /**
   * The public key the agent last gave it (its identity in updatePeers' remove): not the next key a
   * rotation moved it to. As the device's key map names it (the peer's keyName while it holds that
   * key: one string, not a base64 copy of its own, 64 B a peer), or as given when that name does
   * not spell it back (not standard base64: the digest hashes what was given). See givenKeyOf.
   */
  givenKey: string | undefined = undefined;
  /**
   * The endpoint the agent last gave it (the object the peer was given: no copy while it has not
   * roamed), and its announced next key as given (the device may refuse it or have moved to it):
   * what the table digest names (wireguard-table-digest.ts), and what tells a new endpoint from
   * one given again.
   */
  givenEndpoint: WireGuardPeerSpec['endpoint'] = null;
  givenNext: string | undefined = undefined;
  /**
   * Its allowed IPs as configured (the trie answers by address; this answers by peer without a
   * walk): each its trie handle while the peer holds it and the trie spells it as given, else its
   * text (a string of its own was ~60 B a prefix).
   */
  prefixes: PrefixRef[] = [];
  tx = 0;
  rx = 0;
  batchBytes = 0;
  batchPackets = 0;
  // Not its peer: the peer names the record (its `record` field), and the tx batch keeps both.
}

/**
 * The given key as a record keeps it: its key name (`name`, mapKey's) when the name spells it back,
 * as every key an agent gives does (standard base64), else the text as given (a digest of the
 * table hashes the given text: WireGuardTableDigest reads a 32-character key as a name).
 */
function givenKeyOf(given: string, name: string): string {
  return given.length === 44 && Buffer.from(name, 'latin1').toString('base64') === given ? name : given;
}

/** A plain IPv4 endpoint's address as an int32: one the engine did not make (rare: parsed at each use). */
function ipv4Number(address: string): number {
  const b = parseIp(address).bytes;
  return (b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!;
}

/** The engine's record of a peer (its `record` field: only this engine sets it). */
function recordOf(peer: Peer): PeerRecord | undefined {
  return peer.record as PeerRecord | undefined;
}

export class WireGuardEngine implements DatapathEngine<WireGuardProtocol> {
  readonly device: Device;
  private readonly allowed = new AllowedIps<Peer>();
  // Each peer's record is the peer's `record` field (recordOf), not a map by peer (~45 B a peer). A
  // peer is found by its name or given key through the device's key map and its record (givenPeer,
  // namedHolder): maps by name and by given key were ~45 B a peer each.
  private deadline = Infinity;
  private deadlineAt = -Infinity;
  /** The digest made since the last peer update (undefined: none yet); see digest(). */
  private heldDigest?: string;
  private readonly tx = new PacketBatch({ capacity: BATCH, slotSize: SLOT, headroom: TX_HEADROOM, tailroom: TX_TAILROOM });
  private readonly rx: PacketBatch;
  private readonly aead = new AeadBatch(RX_BATCH);
  /** The keypairs' native contexts: made at a keypair's first packet each way, released when it idles or dies. */
  private readonly contexts = new AeadContexts<Keypair>({
    make: (kp, way) => {
      return AeadKey.createHandle('chacha20-poly1305', way === 'seal' ? kp.sendKey : kp.receiveKey, 16, way);
    },
    rowInOwner: true,
  });
  private readonly single: SinglePacketWriter;
  /**
   * The core's datagrams of one entry point, sent together at its end (send-queue.ts); a transport
   * datagram (a keepalive, a staged packet) is tagged with its peer (null: none known) to be counted.
   */
  private readonly sends: SendQueue<Peer | null>;
  /** Per rx AEAD op: the packet index and keypair/counter it belongs to. */
  private readonly rxIndex = new Int32Array(RX_BATCH);
  private readonly rxKeypair: (Keypair | null)[] = new Array(RX_BATCH).fill(null);
  private readonly rxCounter = new Float64Array(RX_BATCH);
  /**
   * The peers the current tx batch sends to (their counters carry the batch's sums), and the
   * keypairs the current rx batch accepted packets under: fixed arrays with a count, reused batch
   * after batch (a lone packet's path allocates nothing and never resizes an array).
   */
  private readonly batchPeers: (Peer | null)[] = new Array(BATCH).fill(null);
  private readonly batchRecords: (PeerRecord | null)[] = new Array(BATCH).fill(null);
  private batchPeerCount = 0;
  private readonly receivedRuns: ReceivedRun[] = Array.from({ length: RX_BATCH }, () => new ReceivedRun());
  private receivedRunCount = 0;
  /**
   * An IPv6 endpoint's address as the socket takes it, its bytes (an IPv4 endpoint is an
   * Ipv4Endpoint: its address a number already).
   */
  private readonly dest6 = new WeakMap<Endpoint, Uint8Array>();
  /** An IPv4 destination's bytes for sendTo (the socket copies them at once). */
  private readonly dest4Bytes = new Uint8Array(4);
  readonly counters: WireGuardEngineCounters = {
    txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, noRoute: 0, sourceNotAllowed: 0,
    malformed: 0, tooBig: 0, sendFailed: 0, staged: 0,
  };

  constructor(private readonly init: WireGuardEngineInit, private readonly tun: TunDevice, private readonly udp: UdpSocket) {
    this.single = new SinglePacketWriter(tun, init.mtu);
    this.sends = new SendQueue<Peer | null>(udp, {
      datagrams: SENDS_QUEUED,
      bytes: SENDS_QUEUED * 256,
      sent: (peer) => {
        this.counters.txPackets++;
        if (peer) this.packetsOf(peer).tx++;
      },
      failed: (n) => { this.counters.sendFailed += n; },
    });
    // With UDP GRO a slot takes a coalesced super-datagram (up to 64 KiB) split into many packets.
    this.rx = udp.gro
      ? new PacketBatch({ capacity: RX_BATCH, slotSize: RX_HEADROOM + UDP_GRO_SLOT, slots: GRO_SLOTS, headroom: RX_HEADROOM })
      : new PacketBatch({ capacity: BATCH, slotSize: SLOT, headroom: RX_HEADROOM });
    this.device = new Device({ privateKey: init.privateKey, mtu: init.mtu, wallClockOffsetMs: init.wallClockOffsetMs, keylog: !!init.keylogFile });
    this.device.indexes.onKeypairErased = (kp) => this.contexts.release(kp); // a dead keypair's contexts go with it
    if (init.resume) {
      // A handover: the peers and sessions of the datapath before, which stopped before exporting them.
      this.updatePeers(init.resume.state.peers, []);
      importSessions(this.device, init.resume.state.sessions, wholeMs(performance.now()), Date.now() - init.resume.exportedAtUnixMs);
    }
  }

  // ---- TUN -> network -------------------------------------------------------------------------

  fromTunnel(at: number): number {
    const now = wholeMs(at); // the device's clock is whole ms: the times it keeps stay Smis (wholeMs)
    const b = this.tx;
    const n = this.tun.readBatch(b);
    if (n === 0) return 0;
    const buf = b.buf, aead = this.aead, mtu = this.init.mtu;
    aead.clear();
    let out = 0;
    // Most batches go to one peer: one lookup per run of them. The run's peer is a local, not
    // last?.peer: with lone packets that load never ran, so TurboFan left it without feedback and
    // the first batch of two deoptimized fromTunnel, which then ran as baseline code for seconds.
    let last: PeerRecord | null = null, lastPeer: Peer | null = null;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      if (ipFamilyOf(buf, off, len) === 0) { this.counters.malformed++; continue; }
      const peer = this.allowed.lookupDestination(buf, off);
      if (!peer) { this.counters.noRoute++; continue; }
      if (len > mtu) { this.answerTooBig(off, len); continue; }
      const kp = this.device.sendingKeypair(peer, now);
      const nonce = off - TX_HEADROOM;
      const padded = kp ? frameTransport(buf, off, len, kp, mtu, buf, nonce) : -1;
      if (kp === null || padded < 0) {
        // No session yet (or out of counters): the core stages a copy and starts a handshake.
        this.counters.staged++;
        this.perform(this.device.encapsulate(peer, buf.subarray(off, off + len), now));
        continue;
      }
      aead.addHandle(this.contexts.get(kp, 'seal', now), off, padded, nonce);
      this.setDestination(b, out, peer.endpoint!); // sendingKeypair() answers only for a peer with an endpoint
      b.offs[out] = off - HEADER;
      b.lens[out] = transportLength(padded);
      out++;
      if (lastPeer !== peer) { // a compare that runs for every packet (no second one: it would lack feedback too)
        last = this.packetsOf(peer);
        lastPeer = peer;
        if (last.batchPackets === 0) {
          this.batchRecords[this.batchPeerCount] = last;
          this.batchPeers[this.batchPeerCount++] = peer;
        }
      }
      last!.batchBytes += transportLength(padded); // set with lastPeer
      last!.batchPackets++;
      this.counters.txBytes += len;
    }
    if (out > 0) {
      aead.seal(buf);
      for (let j = 0; j < out; j++) if (!aead.ok[j]) b.lens[j] = -1;
      const sent = this.udp.sendBatch(b, out);
      if (sent < out) this.counters.sendFailed += out - sent;
      this.counters.txPackets += sent;
    }
    for (let k = 0; k < this.batchPeerCount; k++) {
      const c = this.batchRecords[k]!, peer = this.batchPeers[k]!;
      this.batchRecords[k] = this.batchPeers[k] = null;
      c.tx += c.batchPackets;
      const bytes = c.batchBytes;
      c.batchPackets = c.batchBytes = 0;
      this.perform(peer.onDataSent(now, bytes));
    }
    this.batchPeerCount = 0;
    this.sends.flush();
    return n;
  }

  private answerTooBig(off: number, len: number): void {
    this.counters.tooBig++;
    this.single.answerTooBig(this.tx.buf, off, len);
  }

  // ---- network -> TUN -------------------------------------------------------------------------

  fromNetwork(at: number): number {
    const now = wholeMs(at);
    const b = this.rx;
    const n = this.udp.recvBatch(b);
    if (n === 0) return 0;
    const buf = b.buf, aead = this.aead;
    aead.clear();
    let ops = 0;
    for (let i = 0; i < n; i++) {
      const off = b.offs[i]!, len = b.lens[i]!;
      // Transport data by its type byte; the core judges the rest of its header, decapsulate() everything else.
      if (len < 4 || buf[off] !== MESSAGE_TRANSPORT_TYPE) { this.handshakeMessage(i, now); continue; }
      const kp = this.device.transportKeypair(buf, off, len, now);
      if (!kp) continue;
      this.rxCounter[ops] = transportCounter(buf, off);
      aead.addHandle(this.contexts.get(kp, 'open', now), off + HEADER, len - HEADER - TAG, transportNonceInPlace(buf, off));
      this.rxIndex[ops] = i;
      this.rxKeypair[ops] = kp;
      ops++;
    }
    if (ops === 0) {
      this.sends.flush(); // handshake messages' answers
      return n;
    }
    aead.open(buf);
    let out = 0;
    // Most batches come under one keypair: one lookup per run of them (its keypair a local, as
    // fromTunnel's peer: run?.keypair deoptimized fromNetwork at the first batch of two).
    let run: ReceivedRun | null = null, runKeypair: Keypair | null = null;
    for (let j = 0; j < ops; j++) {
      const kp = this.rxKeypair[j]!;
      this.rxKeypair[j] = null;
      if (!this.device.acceptTransport(kp, this.rxCounter[j]!, aead.ok[j] === 1)) continue;
      const i = this.rxIndex[j]!;
      const off = b.offs[i]! + HEADER, plain = b.lens[i]! - HEADER - TAG;
      if (runKeypair !== kp) {
        run = this.receivedRun(kp, i);
        runKeypair = kp;
      }
      run!.bytes += plain; // set with runKeypair
      run!.packets++;
      if (plain === 0) continue; // keepalive
      const inner = this.device.innerPacket(buf, off, plain, kp.peer);
      if (inner < 0 || !this.sourceAllowed(buf, off, kp.peer)) continue;
      b.offs[out] = off;
      b.lens[out] = inner;
      out++;
      this.counters.rxPackets++;
      this.counters.rxBytes += inner;
    }
    if (out > 0) this.tun.writeBatch(b, out, RX_WRITE);
    for (let k = 0; k < this.receivedRunCount; k++) {
      const r = this.receivedRuns[k]!;
      const kp = r.keypair!, bytes = r.bytes, packets = r.packets, source = r.source;
      r.keypair = r.source = null;
      r.bytes = r.packets = 0;
      this.packetsOf(kp.peer).rx += packets;
      this.perform(kp.peer.onAuthenticatedDataReceived(kp, now, source!, bytes, packets));
    }
    this.receivedRunCount = 0;
    this.sends.flush();
    return n;
  }

  /**
   * The run of this rx batch under kp (joined by rx packet i, whose sender it keeps when it is the
   * first). Found by a walk over the batch's runs, newest first: the caller asks only when the
   * keypair changes from one packet to the next, and a batch holds few keypairs (a map from every
   * keypair to its run was ~80 B a peer).
   */
  private receivedRun(kp: Keypair, i: number): ReceivedRun {
    const runs = this.receivedRuns;
    for (let k = this.receivedRunCount - 1; k >= 0; k--) if (runs[k]!.keypair === kp) return runs[k]!;
    const r = runs[this.receivedRunCount++]!;
    r.keypair = kp;
    r.source = this.sourceEndpoint(i, kp.peer);
    return r;
  }

  /** Cryptokey routing: the inner packet at buf[off] must come from an address of `peer`. */
  private sourceAllowed(buf: Uint8Array, off: number, peer: Peer): boolean {
    if (this.allowed.lookupSource(buf, off) === peer) return true;
    this.counters.sourceNotAllowed++;
    return false;
  }

  /** Load detection and flood limits are the core's (src/wireguard/handshake-limiter.ts). */
  private handshakeMessage(i: number, now: number): void {
    const b = this.rx;
    const datagram = Uint8Array.prototype.slice.call(b.buf, b.offs[i]!, b.offs[i]! + b.lens[i]!);
    this.perform(this.device.decapsulate(datagram, this.sourceEndpoint(i, null), now));
  }

  /**
   * The sender of rx packet i as an Endpoint: `peer`'s own endpoint when the packet came from there
   * (the usual case: nothing made or kept, and roaming's check is one compare), else a new one (a
   * handshake message's sender, a peer roaming: the core keeps a copy if it roams).
   */
  private sourceEndpoint(i: number, peer: Peer | null): Endpoint {
    const b = this.rx;
    const e = peer?.endpoint;
    if (e && b.ports[i] === e.port && this.sentFrom(i, e)) return e;
    if (b.families[i] !== 6) return new Ipv4Endpoint(this.rxIpv4(i), b.ports[i]!);
    return { address: formatIp(b.addrs, 6, 16 * i), port: b.ports[i]! };
  }

  /** Rx packet i's IPv4 source address as an int32 (as Ipv4Endpoint keeps it). */
  private rxIpv4(i: number): number {
    const a = this.rx.addrs, at = 16 * i;
    return (a[at]! << 24) | (a[at + 1]! << 16) | (a[at + 2]! << 8) | a[at + 3]!;
  }

  /** True when rx packet i came from endpoint e's address. */
  private sentFrom(i: number, e: Endpoint): boolean {
    const b = this.rx;
    if (e instanceof Ipv4Endpoint) return b.families[i] === 4 && this.rxIpv4(i) === e.ipv4;
    const v6 = this.ipv6Of(e);
    if (v6 === undefined) return b.families[i] === 4 && this.rxIpv4(i) === ipv4Number(e.address);
    if (b.families[i] !== 6) return false;
    const a = b.addrs, at = 16 * i;
    for (let k = 0; k < 16; k++) if (a[at + k] !== v6[k]) return false;
    return true;
  }

  /**
   * A plain endpoint's IPv6 address bytes (kept while the endpoint lives), or undefined for an IPv4
   * one: one the engine did not make (compactEndpoint makes an Ipv4Endpoint of every canonical one).
   */
  private ipv6Of(e: Endpoint): Uint8Array | undefined {
    const known = this.dest6.get(e);
    if (known) return known;
    const ip = parseIp(e.address);
    if (ip.family !== 6) return undefined;
    this.dest6.set(e, ip.bytes);
    return ip.bytes;
  }

  /** Makes endpoint e tx packet i's destination in b. */
  private setDestination(b: PacketBatch, i: number, e: Endpoint): void {
    const v4 = e instanceof Ipv4Endpoint ? e.ipv4 : undefined;
    const v6 = v4 === undefined ? this.ipv6Of(e) : undefined;
    if (v6) { b.setPeer(i, v6, 6, e.port); return; }
    this.writeIpv4(b.addrs, 16 * i, v4 ?? ipv4Number(e.address));
    b.families[i] = 4;
    b.ports[i] = e.port;
  }

  /** Endpoint e's address bytes, as sendTo takes them (an IPv4 one in a scratch array). */
  private destinationBytes(e: Endpoint): Uint8Array {
    const v4 = e instanceof Ipv4Endpoint ? e.ipv4 : undefined;
    const v6 = v4 === undefined ? this.ipv6Of(e) : undefined;
    if (v6) return v6;
    this.writeIpv4(this.dest4Bytes, 0, v4 ?? ipv4Number(e.address));
    return this.dest4Bytes;
  }

  private writeIpv4(a: Uint8Array, at: number, v4: number): void {
    a[at] = v4 >>> 24; a[at + 1] = v4 >>> 16; a[at + 2] = v4 >>> 8; a[at + 3] = v4;
  }

  // ---- actions, timers --------------------------------------------------------------------------

  private perform(actions: readonly Action[]): void {
    // Indexed, not for-of: a lone packet's turn calls this two or three times, nearly always with
    // no action, and for-of's iterator and its results were ~170 B of garbage a call (heap sampling).
    for (let i = 0; i < actions.length; i++) {
      const a = actions[i]!;
      switch (a.kind) {
        case 'network': // sent at the entry point's end (this.sends.flush())
          this.sends.add(a.datagram, a.datagram.length, this.destinationBytes(a.endpoint), a.endpoint.port, a.datagram[0] === MESSAGE_TRANSPORT_TYPE ? a.peer : undefined);
          break;
        case 'tunnel': // a whole inner packet, accepted by the core
          if (!this.sourceAllowed(a.packet, 0, a.peer)) break;
          this.single.write(a.packet);
          this.counters.rxPackets++;
          this.counters.rxBytes += a.packet.length;
          break;
        case 'keylog':
          if (this.init.keylogFile) {
            try { appendFileSync(this.init.keylogFile, a.text.endsWith('\n') ? a.text : a.text + '\n', { mode: 0o600 }); } catch { /* best effort */ }
          }
          break;
        default:
          break;
      }
    }
  }


  tick(at: number): void {
    const now = wholeMs(at);
    this.perform(this.device.tick(now));
    this.sends.flush(); // every keepalive and initiation the tick's timers made, in one sendmmsg
    this.contexts.sweep(now);
    this.setDeadline(this.device.nextDeadline(), now); // the timer queue's top, after the tick's timers re-armed
  }

  private setDeadline(device: number | null, now: number): void {
    this.deadline = Math.ceil(Math.min(device ?? Infinity, this.contexts.nextSweep) / TIMER_SLACK_MS) * TIMER_SLACK_MS;
    this.deadlineAt = now;
  }

  /**
   * The earliest peer timer (or context sweep) rounded up to the TIMER_SLACK_MS grid, recomputed at
   * most every TIMER_SLACK_MS (the loop asks before each wait; the device's timer queue answers, and
   * drops the entries of timers stopped meanwhile). A deadline due is answered as it is: the loop
   * ticks for it, and the tick gives the next. `now` is the worker loop's clock, read once a turn: a
   * clock read here for each of the loop's two calls a turn was ~45 ns each, ~4 ns with it given.
   */
  nextDeadline(now = performance.now()): number {
    if (this.deadline > now && now - this.deadlineAt >= TIMER_SLACK_MS) this.setDeadline(this.device.nextDeadline(), now);
    return this.deadline;
  }

  // ---- control ---------------------------------------------------------------------------------

  control(req: RequestOf<WireGuardProtocol>): AnyReplyOf<WireGuardProtocol> {
    this.deadlineAt = -Infinity; // peers come and go
    if (req.type === 'updatePeers' || req.type === 'setPeers') this.heldDigest = undefined;
    switch (req.type) {
      case 'updatePeers': return this.updatePeers(req.upsert, req.remove);
      case 'setPeers': return this.setPeers(req.peers);
      case 'digest': return { digest: req.full || this.heldDigest === undefined ? (this.heldDigest = this.digest()) : this.heldDigest };
      case 'status': return this.status();
      case 'rotateKey': {
        this.perform(this.device.setStaticKey(Uint8Array.from(req.privateKey), wholeMs(performance.now()))); // the worker loop's clock
        this.sends.flush();
        return { publicKey: this.device.publicKeyBase64 };
      }
      case 'retireKey': return { retired: this.device.retirePreviousKey() };
      default: throw new VeilError('BAD_REQUEST', `unknown datapath request '${(req as { type: string }).type}'`);
    }
  }

  /**
   * Makes the device's peers and allowed IPs exactly `specs` (the whole table: tests, the agent's
   * safety net when the digests differ). A named peer that moves to the next key its node announced keeps its sessions.
   */
  private setPeers(wanted: WireGuardPeerSpec[]): { peers: number } {
    const specs = this.followRotations(wanted);
    const keep = new Set(specs.map((s) => s.publicKey));
    const r = this.applyPeers(specs, wanted, [...this.device.peers()].filter((p) => !keep.has(p.publicKeyBase64)));
    this.dropUnownedPrefixes();
    return r;
  }

  /**
   * Trie entries no peer lists (drift the digest shows, which no peer's update would remove): they
   * would send a prefix's packets to a peer the agent never gave it.
   */
  private dropUnownedPrefixes(): void {
    this.allowed.removeUnlisted((visit) => { for (const [p, r] of this.records()) for (const x of r.prefixes) visit(p, x); });
  }

  /**
   * Removes peers by the public key they were given, then adds or updates the given ones: the cost
   * is that of the peers named. A peer both removed and upserted (its key changed) is updated:
   * in place if the new key is the one it announced, rebuilt otherwise.
   */
  private updatePeers(upsert: WireGuardPeerSpec[], remove: string[]): { peers: number } {
    const specs = this.followRotations(upsert);
    const keep = new Set(specs.map((s) => s.publicKey));
    const gone: Peer[] = [];
    for (const key of remove) {
      // The device may have moved the peer to its next key on its own (a handshake under it).
      const p = this.givenPeer(key);
      if (p && !keep.has(p.publicKeyBase64)) gone.push(p);
    }
    return this.applyPeers(specs, upsert, gone);
  }

  /**
   * A static key rotation, seen in the specs: a peer that already proved its announced next key (a
   * handshake from it) has switched and the registry, still showing the old key beside the next one,
   * lags: the peer stays as it is. A spec naming the key its peer announced switches the peer in
   * place (sessions go on); any other new key (a node that lost its key file) rebuilds the peer.
   */
  private followRotations(wanted: WireGuardPeerSpec[]): WireGuardPeerSpec[] {
    const specs = wanted.map((s) => {
      const peer = this.namedHolder(s.name, s.nextPublicKey);
      return peer && s.nextPublicKey === peer.publicKeyBase64 ? { ...s, publicKey: s.nextPublicKey, nextPublicKey: undefined } : s;
    });
    for (const s of specs) {
      const peer = this.namedHolder(s.name, s.publicKey);
      const announced = peer?.nextPublicKey && Buffer.from(peer.nextPublicKey).toString('base64') === s.publicKey;
      if (peer && announced) this.device.changePeerKey(peer, peer.nextPublicKey!);
    }
    return specs;
  }

  /**
   * The peer the agent last gave this public key: the device's holder of the key when it still
   * holds it, else (the peer moved to its next key on its own since: rare) the one whose record
   * says so; else the device's holder of the key, given it or not.
   */
  private givenPeer(key: string): Peer | undefined {
    const p = this.device.peer(key), name = mapKey(key);
    const given = (r: PeerRecord | undefined) => r?.givenKey === name || r?.givenKey === key;
    if (p && given(recordOf(p))) return p;
    for (const [q, r] of this.records()) if (given(r)) return q;
    return p;
  }

  /** The peer named `name` whose current or announced next key is `key` (how followRotations finds a spec's peer). */
  private namedHolder(name: string | undefined, key: string | undefined): Peer | undefined {
    if (name === undefined || !key) return undefined;
    const p = this.device.peer(key);
    return p && recordOf(p)?.name === name ? p : undefined;
  }

  /**
   * specs: what the device is to hold (followRotations' answer), given[i] what the agent sent for
   * specs[i]. An endpoint is set when the peer is new or the agent gives another one than it last
   * did: one given again (every spec of a whole table) leaves a peer that roamed where it roamed
   * to (WireGuard's roaming: the source of its authenticated packets), as a new keepalive or
   * prefix does; the agent sends a moved node's new endpoint as a change.
   */
  private applyPeers(specs: WireGuardPeerSpec[], given: WireGuardPeerSpec[], gone: Peer[]): { peers: number } {
    for (const p of gone) {
      const r = recordOf(p);
      if (r) {
        this.allowed.releaseRefs(p, r.prefixes);
        p.record = undefined;
      }
      this.device.removePeer(p.publicKey);
    }
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i]!, g = given[i]!;
      const key = Buffer.from(s.publicKey, 'base64');
      const peer = this.device.addPeer({ publicKey: key, persistentKeepalive: s.persistentKeepalive });
      let r = recordOf(peer);
      const fresh = !r;
      if (!r) peer.record = r = new PeerRecord();
      // Kept as compactEndpoint makes it (an IPv4 one as two numbers), given and current one object until it roams.
      if (fresh || !sameEndpoint(r.givenEndpoint, s.endpoint)) r.givenEndpoint = peer.endpoint = s.endpoint && compactEndpoint(s.endpoint);
      r.name = s.name;
      r.givenKey = givenKeyOf(g.publicKey, g.publicKey === s.publicKey ? peer.keyName : mapKey(g.publicKey));
      r.givenNext = g.nextPublicKey;
      const next = s.nextPublicKey && this.keyFree(s.nextPublicKey, peer) ? Buffer.from(s.nextPublicKey, 'base64') : null;
      this.device.setPeerNextKey(peer, next);
      const have = r.prefixes;
      const want = new Set(s.allowedIPs);
      // Add first, then remove: a prefix is never without an owner while it moves.
      const refs: PrefixRef[] = new Array(want.size), handles: number[] = [];
      let k = 0;
      for (const pfx of want) {
        // Held already, at the same place (the whole pass's table resend, every 60 s): insert() would
        // change nothing, and its parses made ~8 KB of garbage a peer (~40 MB a resend at 5,000 peers).
        const old = have[k];
        if (typeof old === 'number' && this.allowed.valueAt(old) === peer && this.allowed.prefixAt(old) === pfx) {
          handles.push(old);
          refs[k++] = old;
          continue;
        }
        refs[k++] = this.hold(peer, pfx, handles);
      }
      this.allowed.releaseRefs(peer, this.allowed.refsOutside(have, handles));
      r.prefixes = refs;
    }
    return { peers: this.device.peerCount };
  }

  /** No other peer holds (or announced) this key, and it is not ours. */
  private keyFree(key: string, peer: Peer): boolean {
    const holder = this.device.peer(key);
    return (!holder || holder === peer) && key !== this.device.publicKeyBase64;
  }

  /**
   * Maps the prefix to the peer (its handle added to `handles`); returns how the peer lists it: its
   * handle when the trie spells it as given, else the text. A peer that held it before lists it as
   * text from now on (a handle names a prefix only while its holder keeps it: the node may be
   * freed and made again for another prefix). As the ESP engine's hold().
   */
  private hold(peer: Peer, prefix: string, handles: number[]): PrefixRef {
    const before = this.allowed.get(prefix);
    const handle = this.allowed.insert(prefix, peer);
    handles.push(handle);
    const had = before !== undefined && before !== peer ? recordOf(before) : undefined;
    if (had) {
      const i = had.prefixes.indexOf(handle);
      if (i >= 0) had.prefixes[i] = this.allowed.prefixAt(handle);
    }
    return this.allowed.prefixAt(handle) === prefix ? handle : prefix;
  }

  /**
   * The digest of the table as this engine was given it (wireguard-table-digest.ts): equal to
   * wireGuardSpecsDigest(specs) once it was given exactly the specs, whatever its peers did on their
   * own since (roamed, moved to their next key). The trie is read per prefix a peer lists; a
   * device peer without a record, or a trie entry no peer lists, spoils it.
   */
  private digest(): string {
    const d = new WireGuardTableDigest();
    let owned = 0;
    for (const p of this.device.peers()) {
      const r = recordOf(p);
      if (!r || r.givenKey === undefined) { d.stray(`peer ${p.publicKeyBase64} not given`); continue; }
      d.peer(r.givenKey, r.name, r.givenEndpoint, p.persistentKeepalive, r.givenNext);
      for (const x of r.prefixes) {
        if (this.allowed.valueOfRef(x) !== p) continue;
        owned++;
        if (typeof x === 'number' && x >= 0) d.prefixIpv4(this.allowed.ipv4At(x), this.allowed.lengthAt(x), r.givenKey); // spelled as given (PrefixRef)
        else d.prefix(this.allowed.textOf(x), r.givenKey);
      }
    }
    if (owned !== this.allowed.size) d.stray(`${this.allowed.size - owned} allowed-ips entries no peer owns`);
    return d.value;
  }

  /** The peer's record (a peer removed meanwhile: one that counts for nothing). */
  private packetsOf(peer: Peer): PeerRecord {
    return recordOf(peer) ?? new PeerRecord();
  }

  /** Each device peer with its record (a peer without one, given by nobody, is left out). */
  private *records(): Generator<[Peer, PeerRecord]> {
    for (const p of this.device.peers()) {
      const r = recordOf(p);
      if (r) yield [p, r];
    }
  }

  private status(): WireGuardEngineStatus {
    const peers = [...this.device.peers()].map((p): WireGuardPeerStatus => { const r = this.packetsOf(p); return {
      name: r.name ?? null,
      publicKey: p.publicKeyBase64,
      endpoint: p.endpoint ? formatEndpoint(p.endpoint) : null,
      allowedIPs: r.prefixes.filter((x) => this.allowed.valueOfRef(x) === p).map((x) => this.allowed.textOf(x)),
      lastHandshakeUnixMs: p.stats.lastHandshakeUnixMs,
      rxBytes: p.stats.rxBytes,
      txBytes: p.stats.txBytes,
      rxPackets: r.rx,
      txPackets: r.tx,
      keypairs: [p.current, p.previous, p.next].filter((k) => k && k.isAlive).length,
      persistentKeepalive: p.persistentKeepalive,
      nextPublicKey: p.nextPublicKey ? Buffer.from(p.nextPublicKey).toString('base64') : null,
      onCurrentKey: this.device.peerOnCurrentKey(p),
    }; });
    return {
      publicKey: this.device.publicKeyBase64, retiringPublicKey: this.device.retiringPublicKeyBase64, listenPort: this.udp.port, peers, aeadContexts: this.contexts.count,
      counters: { ...this.counters }, drops: { ...this.device.stats.drops }, tun: this.tun.counters(), udp: this.udp.counters(),
    };
  }

  /** The peers as configured (the specs that make them again, under the keys they hold now) and their sessions. */
  exportState(now: number): WireGuardEngineState {
    const peers = [...this.device.peers()].map((p): WireGuardPeerSpec => { const r = this.packetsOf(p); return {
      publicKey: p.publicKeyBase64, endpoint: p.endpoint ? plainEndpoint(p.endpoint) : null, allowedIPs: r.prefixes.map((x) => this.allowed.textOf(x)),
      persistentKeepalive: p.persistentKeepalive, ...(r.name !== undefined ? { name: r.name } : {}),
      ...(p.nextPublicKey ? { nextPublicKey: Buffer.from(p.nextPublicKey).toString('base64') } : {}),
    }; });
    return { peers, sessions: exportSessions(this.device, wholeMs(now)) };
  }

  close(): void {
    for (const p of [...this.device.peers()]) this.device.removePeer(p.publicKey);
    this.contexts.clear();
  }
}
