// One WireGuard peer: its handshake, its three keypairs (current/previous/next, as wireguard-go),
// the packets waiting for a session, its timers, endpoint and counters. The protocol decisions
// (when to handshake, which keypair to use, when to send keepalives) all live here.
//
// Keypair rotation, exactly as wireguard-go:
//  - Initiator: the new keypair becomes `current` as soon as the response is consumed (the old
//    current moves to `previous`), and it sends at once (staged packets or a keepalive).
//  - Responder: the new keypair waits in `next` and is not used for sending until the first
//    transport message arrives under it (key confirmation); then next -> current,
//    current -> previous. Until then the responder keeps sending with its old current.
//  - Unlike wireguard-go, a keypair a new handshake pushes out of the three is not erased at
//    once: the peer may still send under it. It lingers, receive-only (lingering-keypairs.ts).
//  - Unlike wireguard-go, `previous` is not kept until the next handshake: once the peer sends
//    under current it lingers the same way and goes (letGoPrevious).
import {
  KEEPALIVE_TIMEOUT, MAX_STAGED_PACKETS, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME, REKEY_TIMEOUT, MESSAGE_TRANSPORT_MIN_SIZE,
} from './constants.js';
import { COOKIE_STATE_SIZE, CookieGenerator, writeMac1 } from './cookie.js';
import { copyEndpoint, sameEndpoint, type Endpoint } from './endpoint.js';
import type { IndexTable } from './index-table.js';
import type { LingeringKeypairs } from './lingering-keypairs.js';
import { Keypair } from './keypair.js';
import { keylogLines } from './keylog.js';
import { HANDSHAKE_STATE_SIZE, Handshake, createInitiation, deriveSessionKeys, type StaticIdentity } from './noise-handshake.js';
import type { DeviceStats } from './stats.js';
import { TAI64N_SIZE, tai64nInto } from './tai64n.js';
import { PeerTimers } from './timers.js';
import { NOT_QUEUED } from './timer-queue.js';
import type { Slot, SlotAllocator } from './slot-allocator.js';
import { MAC2_FROM_END } from './messages.js';
import { sealTransport } from './transport.js';
import { NO_ACTIONS, type Action } from './actions.js';

/** A keepalive's payload: nothing. One for every keepalive: staged packets are only read (sealTransport copies). */
const KEEPALIVE_PAYLOAD = new Uint8Array(0);

/**
 * Every peer's staged queue while empty (never pushed to: stageOne() gives a peer its own array).
 * An array per peer, kept after its first packets, was 32-60 B a peer. Made as a queue's arrays
 * are (objects once pushed), so Device.sendingKeypair()'s length check sees one array map.
 */
const NO_STAGED: Uint8Array[] = [new Uint8Array(0)];
NO_STAGED.pop();

/** Our next initiation's timestamp (createInitiation encrypts it at once; the core is synchronous). */
const timestampScratch = new Uint8Array(TAI64N_SIZE);

/** Bytes of a peer's slot in PeerHost.peerSlots: public key, handshake state, cookie state. */
export const PEER_SLOT_SIZE = 32 + HANDSHAKE_STATE_SIZE + COOKIE_STATE_SIZE;

/** How a peer is configured (what `wg set peer` would take). */
export interface PeerConfig {
  /** The peer's X25519 public key, 32 bytes. */
  publicKey: Uint8Array;
  /** Optional 32-byte preshared key (psk in Noise_IKpsk2); all zero when absent. */
  presharedKey?: Uint8Array;
  /** Where to send; learned from authenticated packets when null (roaming). */
  endpoint?: Endpoint | null;
  /** Persistent keepalive interval in seconds; 0 = off. */
  persistentKeepalive?: number;
}

/** What a Peer needs from its Device (an interface, so peer.ts does not import device.ts). */
export interface PeerHost {
  readonly identity: StaticIdentity;
  readonly stats: DeviceStats;
  readonly indexes: IndexTable;
  /** Keypairs pushed out by newer handshakes, still receivable for a while. */
  readonly lingering: LingeringKeypairs;
  readonly keylog: boolean;
  /** Tunnel MTU used to cap padding (0 = none). */
  readonly mtu: number;
  /** Random jitter in [0, REKEY_TIMEOUT_JITTER_MAX) ms. */
  jitter(): number;
  /** Unix milliseconds for a device-clock `now` (for TAI64N timestamps and status). */
  wallClock(now: number): number;
  /** Where peers keep their bytes (slots of PEER_SLOT_SIZE). */
  readonly peerSlots: SlotAllocator;
  /** Where keypairs keep their keys (slots of KEYPAIR_SLOT_SIZE). */
  readonly keySlots: SlotAllocator;
  /** A timer of `peer` was armed at `at` (device clock): the device queues the peer by it. */
  timerArmed(peer: Peer, at: number): void;
}

export interface PeerStats {
  /** Bytes of transport datagrams received/sent (header + ciphertext + tag), as `wg show`. */
  rxBytes: number;
  txBytes: number;
  /** Device-clock ms of the latest completed handshake, null if none. */
  lastHandshakeAt: number | null;
  /** Unix ms of the latest completed handshake, null if none. */
  readonly lastHandshakeUnixMs: number | null;
}

/**
 * A peer's timers are its own fields (Peer extends PeerTimers, as wireguard-go's Peer embeds its
 * timers): an object of their own was 88 B a peer, and every peer has them.
 */
export class Peer extends PeerTimers implements PeerStats {
  /** Current outer address; updated from the source of every authenticated packet. */
  endpoint: Endpoint | null;
  /** Persistent keepalive interval in seconds (0 = off). */
  persistentKeepalive: number;
  readonly handshake: Handshake;
  /**
   * Made when the peer sends us a cookie reply (under load): until then addMacs() writes mac1 alone
   * and needs no object (72 B a peer that handshakes).
   */
  private cookies: CookieGenerator | null = null;
  /** True once a handshake message we sent has its mac1 in the slot (what a cookie reply answers). */
  private sentMac1 = false;
  rxBytes = 0;
  txBytes = 0;
  lastHandshakeAt: number | null = null;
  /** The keypair we send with. */
  current: Keypair | null = null;
  /**
   * The keypair before current, still accepted on receive (packets in flight during rekey) until
   * the peer sends under current; then it lingers (letGoPrevious).
   */
  previous: Keypair | null = null;
  /** Responder side: the new keypair awaiting its first received packet. */
  next: Keypair | null = null;
  /** Packets waiting for a usable keypair (oldest first). Empty array = keepalive. Read-only outside. */
  staged: Uint8Array[] = NO_STAGED;

  /**
   * The key this peer will switch to (its node announced it, WireGuard static key rotation): an
   * initiation from it is accepted as this peer's, and then it becomes the peer's key.
   */
  nextPublicKey: Uint8Array | null = null;
  /** Our public key (by reference) when this peer last authenticated us under our current key. */
  ourKeyAtHandshake: Uint8Array | null = null;

  /**
   * The datapath's own record of this peer (name, prefixes, counts); the core never reads it. A
   * field, not the datapath's map by peer (~45 B a peer).
   */
  record: object | undefined = undefined;

  /** When we created our latest initiation (device clock), null for never (not -Infinity: see Handshake's times). */
  private initiatedAt: number | null = null;

  /**
   * @internal Its public key as the device's key map names it (mapKey: the 32 bytes as a Latin-1
   * string), set by the device. One string a peer: the datapath's record keeps this one for the
   * key it was given, not a base64 copy (64 B a peer).
   */
  keyName = '';

  /** @internal The deadline of this peer's live entry in the device's timer queue (timer-queue.ts). */
  queuedAt = NOT_QUEUED;

  /** @internal created by Device.addPeer */
  constructor(private readonly host: PeerHost, config: PeerConfig) {
    super();
    // Every byte a peer keeps (public key, handshake state, last mac1) in one slot of a shared chunk.
    // The handshake keeps the slot (the public key first): the peer reads its key through it.
    const { chunk: slab, offset } = host.peerSlots.alloc();
    this.endpoint = config.endpoint ?? null;
    this.persistentKeepalive = config.persistentKeepalive ?? 0;
    this.handshake = new Handshake(host.identity, config.publicKey, config.presharedKey, slab, offset);
  }

  protected override armed(at: number): void {
    this.host.timerArmed(this, at);
  }

  /** Its timers: the peer's own fields (see the class). */
  get timers(): PeerTimers {
    return this;
  }

  /**
   * Unix ms of the latest completed handshake: read from lastHandshakeAt through the device's wall
   * clock, not kept (a Unix time in ms is no small integer: a field of its own held a heap number,
   * 24 B a peer).
   */
  get lastHandshakeUnixMs(): number | null {
    return this.lastHandshakeAt === null ? null : this.host.wallClock(this.lastHandshakeAt);
  }

  /** Its counters: the peer's own fields (an object of their own was 56 B a peer). */
  get stats(): PeerStats {
    return this;
  }

  /** The peer's X25519 public key, 32 bytes: a view of its slot made on each call (a view kept was 96 B a peer). */
  get publicKey(): Uint8Array {
    return this.handshake.remoteStatic;
  }

  /**
   * @internal Device.changePeerKey: the peer now uses `publicKey` (its static key rotated). Its
   * sessions, endpoint, timers and counters stay: they do not depend on static keys.
   */
  changeKey(publicKey: Uint8Array): void {
    this.publicKey.set(publicKey);
    this.handshake.resetStaticStatic(this.host.identity);
    if (this.nextPublicKey && Buffer.compare(this.nextPublicKey, publicKey) === 0) this.nextPublicKey = null;
  }

  /** mac1/mac2 for what we send this peer, and the cookies it gives us (made on first use). */
  get cookieGenerator(): CookieGenerator {
    if (!this.cookies) {
      // The slot's cookie state, in the chunk the handshake's view already is (a view of its own was 96 B a peer).
      this.cookies = new CookieGenerator(this.publicKey, this.handshake.stateSlab, this.cookieStateAt, this.sentMac1);
    }
    return this.cookies;
  }

  /** Where the slot's cookie state (the last mac1) is in the handshake's chunk. */
  private get cookieStateAt(): number {
    return this.handshake.keyOffset + 32 + HANDSHAKE_STATE_SIZE;
  }

  /** @internal Writes mac1, and mac2 once the peer gave us a fresh cookie, into a handshake message we send it. */
  addMacs(msg: Uint8Array, now: number): void {
    if (this.cookies) return this.cookies.addMacs(msg, now);
    const at = this.cookieStateAt;
    writeMac1(msg, this.publicKey, this.handshake.stateSlab.subarray(at, at + COOKIE_STATE_SIZE));
    this.sentMac1 = true;
    msg.fill(0, msg.length - MAC2_FROM_END); // no cookie: mac2 zero
  }

  /** The public key in standard base64 (made on each call: peers do not keep the string). */
  get publicKeyBase64(): string {
    return Buffer.from(this.publicKey).toString('base64');
  }

  /**
   * @internal Device.removePeer: moves the peer's bytes into a slab of its own (a removed Peer
   * stays readable) and returns its shared slot for reuse.
   */
  leaveSlot(): Slot {
    const old: Slot = { chunk: this.handshake.stateSlab, offset: this.handshake.keyOffset };
    const own = new Uint8Array(PEER_SLOT_SIZE);
    own.set(old.chunk.subarray(old.offset, old.offset + PEER_SLOT_SIZE));
    this.handshake.rehome(own, 0);
    this.cookies?.rehome(own, 32 + HANDSHAKE_STATE_SIZE, own.subarray(0, 32));
    return old;
  }

  // ---- lower-level API for a batched datapath -------------------------------------------------

  /**
   * The keypair to encrypt with now, or null when a handshake is needed first. A datapath asks
   * Device.sendingKeypair(), which also minds staged packets and the endpoint.
   */
  currentSendKeypair(now: number): Keypair | null {
    const kp = this.current;
    return kp && kp.canSend(now) ? kp : null;
  }

  /**
   * Hook after encrypted datagrams went out under a keypair from Device.sendingKeypair():
   * arms the timers and starts a rekey when the session is old or has sent too much.
   * `datagramBytes` is their total size; `keepaliveOnly` when every one was a keepalive.
   * One call per batch is enough. The returned actions (usually none) must be performed.
   */
  onDataSent(now: number, datagramBytes: number, keepaliveOnly = false): readonly Action[] {
    const out: Action[] = [];
    this.afterSend(now, datagramBytes, keepaliveOnly);
    this.keepKeyFreshSending(now, out);
    return out.length ? out : NO_ACTIONS;
  }

  /**
   * Hook after transport data under `keypair` was accepted (Device.acceptTransport()):
   * confirms a responder's next keypair, rekeys an initiator's session near REJECT_AFTER_TIME,
   * arms keepalive timers and updates the endpoint (roaming). `plaintextBytes` is the decrypted
   * (padded) length summed over the batch, 0 when only keepalives arrived. Returns the actions to
   * perform (e.g. staged packets now sendable, a handshake initiation).
   */
  onAuthenticatedDataReceived(keypair: Keypair, now: number, source: Endpoint, plaintextBytes: number, packets = 1): readonly Action[] {
    const out: Action[] = [];
    this.receivedData(keypair, now, source, plaintextBytes, packets, out);
    return out.length ? out : NO_ACTIONS;
  }

  /** Earliest timer deadline of this peer (device clock), null if idle. */
  nextDeadline(): number | null {
    return this.earliestDeadline();
  }

  // ---- protocol internals (called by Device) ---------------------------------------------------

  /** @internal */
  receivedData(keypair: Keypair, now: number, source: Endpoint, plaintextBytes: number, packets: number, out: Action[]): void {
    if (this.receivedWithKeypair(keypair)) {
      this.timers.handshakeComplete();
      this.markHandshake(now, out);
      this.sendStaged(now, out);
    }
    if (this.previous !== null && keypair === this.current) this.letGoPrevious(now);
    this.keepKeyFreshReceiving(now, out);
    this.timers.anyAuthenticatedPacketTraversal(now, this.persistentKeepalive * 1000);
    this.timers.anyAuthenticatedPacketReceived();
    this.roam(source);
    this.stats.rxBytes += plaintextBytes + packets * MESSAGE_TRANSPORT_MIN_SIZE;
    if (plaintextBytes === 0) {
      this.host.stats.keepalivesReceived += packets;
      return;
    }
    this.host.stats.dataPacketsReceived += packets;
    this.timers.dataReceived(now);
  }

  /** @internal endpoint roaming: the source of any authenticated packet becomes the endpoint. */
  roam(source: Endpoint): void {
    if (!sameEndpoint(this.endpoint, source)) this.endpoint = copyEndpoint(source);
  }

  /** @internal Stages (a copy of) a packet; drops the oldest when full. */
  stage(packet: Uint8Array, out: Action[]): void {
    if (this.staged.length >= MAX_STAGED_PACKETS) {
      this.staged.shift();
      this.host.stats.drop('stagedQueueFull');
      out.push({ kind: 'drop', reason: 'stagedQueueFull', peer: this });
    }
    this.stageOne(Uint8Array.from(packet));
  }

  private stageOne(packet: Uint8Array): void {
    if (this.staged === NO_STAGED) this.staged = [];
    this.staged.push(packet);
  }

  /** @internal Sends what is staged if a keypair is usable, else starts a handshake. */
  sendStaged(now: number, out: Action[]): void {
    if (this.staged.length === 0) return;
    const kp = this.currentSendKeypair(now);
    if (!kp) {
      this.sendHandshakeInitiation(now, false, out);
      return;
    }
    const endpoint = this.endpoint;
    if (!endpoint) {
      this.dropStaged('noEndpoint', out);
      return;
    }
    let bytes = 0;
    let allKeepalive = true;
    while (this.staged.length) {
      const sent = this.sealAndSend(kp, endpoint, this.staged[0]!, out);
      if (sent < 0) {
        this.sendHandshakeInitiation(now, false, out);
        return;
      }
      const packet = this.staged.shift()!;
      if (this.staged.length === 0) this.staged = NO_STAGED; // an emptied array keeps its store
      if (packet.length !== 0) allKeepalive = false;
      bytes += sent;
    }
    this.afterSend(now, bytes, allKeepalive);
    this.keepKeyFreshSending(now, out);
  }

  /** Seals `packet` under kp and emits it to endpoint: its datagram's length, or -1 when kp can seal no more. */
  private sealAndSend(kp: Keypair, endpoint: Endpoint, packet: Uint8Array, out: Action[]): number {
    const datagram = sealTransport(kp, packet, this.host.mtu);
    if (!datagram) return -1;
    if (packet.length === 0) this.host.stats.keepalivesSent++;
    else this.host.stats.dataPacketsSent++;
    out.push({ kind: 'network', peer: this, endpoint, datagram });
    return datagram.length;
  }

  /** @internal A keepalive: sent at once when nothing is staged and a keypair can seal it; else staged (unless something is), then what is staged is sent. */
  sendKeepalive(now: number, out: Action[]): void {
    if (this.staged.length === 0) {
      // Nothing staged: sealed and sent at once when it can be, with no staging array and no packet
      // of its own (a passive keepalive follows every probe's ack: ~100 a second at 5,000 peers, and
      // their garbage was promoted in the rekey wave's scavenges). Else staged, as any packet.
      const kp = this.currentSendKeypair(now), endpoint = this.endpoint;
      const sent = kp !== null && endpoint !== null ? this.sealAndSend(kp, endpoint, KEEPALIVE_PAYLOAD, out) : -1;
      if (sent >= 0) {
        this.afterSend(now, sent, true);
        this.keepKeyFreshSending(now, out);
        return;
      }
      this.stageOne(KEEPALIVE_PAYLOAD);
    }
    this.sendStaged(now, out);
  }

  /**
   * @internal Creates and emits an initiation. Rate-limited to one per REKEY_TIMEOUT; `isRetry`
   * keeps the attempt counter (retransmissions), anything else resets it.
   */
  sendHandshakeInitiation(now: number, isRetry: boolean, out: Action[]): void {
    if (!isRetry) this.timers.handshakeAttempts = 0;
    const hs = this.handshake;
    if (hs.lastSentHandshake !== null && now - hs.lastSentHandshake < REKEY_TIMEOUT) return;
    const endpoint = this.endpoint;
    if (!endpoint) {
      this.host.stats.drop('noEndpoint');
      out.push({ kind: 'drop', reason: 'noEndpoint', peer: this });
      return;
    }
    hs.lastSentHandshake = now;
    this.initiatedAt = now;
    this.host.indexes.delete(hs.localIndex);
    const index = this.host.indexes.newIndexForHandshake(this);
    const msg = createInitiation(this.host.identity, hs, index, tai64nInto(timestampScratch, this.host.wallClock(now)));
    if (!msg) {
      this.host.indexes.delete(index);
      this.host.stats.drop('handshakeDecryptFailed');
      out.push({ kind: 'drop', reason: 'handshakeDecryptFailed', peer: this });
      return;
    }
    this.addMacs(msg, now);
    if (this.host.keylog && hs.localEphemeral) out.push({ kind: 'keylog', text: this.keylogText(hs.localEphemeral) });
    this.timers.anyAuthenticatedPacketTraversal(now, this.persistentKeepalive * 1000);
    this.timers.anyAuthenticatedPacketSent();
    this.timers.handshakeInitiated(now, this.host.jitter());
    this.host.stats.handshakeInitiationsSent++;
    out.push({ kind: 'network', peer: this, endpoint, datagram: msg });
  }

  /** @internal Key log text for a handshake whose local ephemeral is `ephemeral`. */
  keylogText(ephemeral: Uint8Array): string {
    return keylogLines({
      localStaticPrivateKey: this.host.identity.privateKey.raw,
      remoteStaticPublicKey: this.publicKey,
      localEphemeralPrivateKey: ephemeral,
      presharedKey: this.handshake.presharedKey,
    });
  }

  /**
   * @internal Turns the finished handshake into a keypair and rotates current/previous/next
   * (wireguard-go's BeginSymmetricSession). Returns the keypair to send with once confirmed (the
   * new one but for a crossing resolved already), null if the state was wrong.
   *
   * Crossing initiations: both sides answered each other's and kept their own, so each may
   * complete two sessions. The one the greater public key initiated is the one both keep: its
   * initiator moves the other into `previous` (wireguard-go's rule). The other side completes
   * its own as initiator either with the peer's still waiting in `next` (it sends with its own at
   * once but keeps `next`, which the peer's first packet promotes) or after the peer's session
   * already carries traffic (it keeps that one and drops its own). No packet waits a
   * REKEY_TIMEOUT, either response may be lost, and the initiator of the kept session rekeys.
   */
  beginSymmetricSession(now: number): Keypair | null {
    const keys = deriveSessionKeys(this.handshake);
    if (!keys) return null;
    // Named fields, not a spread of keys: V8 made a map transition for each spread (~1 % of a handshake).
    const kp = new Keypair({
      sendKey: keys.sendKey, receiveKey: keys.receiveKey, localIndex: keys.localIndex, remoteIndex: keys.remoteIndex,
      isInitiator: keys.isInitiator, createdAt: now, peer: this, slots: this.host.keySlots,
    });
    this.host.indexes.swapIndexForKeypair(keys.localIndex, kp);
    const { previous, next, current } = this;
    if (keys.isInitiator && this.peerWinsCrossings() && current && !current.isInitiator && (this.initiatedAt === null || current.createdAt >= this.initiatedAt)) {
      this.deleteKeypair(kp);
      return current;
    }
    // What leaves the three slots lingers while the peer may still be sending under it. A previous
    // keypair here is one the peer has not sent under current since (letGoPrevious would have
    // taken it): it may still send under it.
    if (keys.isInitiator && next && this.peerWinsCrossings()) {
      this.previous = current;
      this.linger(previous, now);
      this.current = kp;
    } else if (keys.isInitiator) {
      if (next) {
        this.next = null;
        this.previous = next;
        this.linger(current, now);
      } else {
        this.previous = current;
      }
      this.linger(previous, now);
      this.current = kp;
    } else {
      this.next = kp;
      this.linger(next, now);
      this.previous = null;
      this.linger(previous, now);
    }
    this.timers.sessionDerived(now);
    return kp;
  }

  /** True when the peer's public key is the greater: its session wins a crossing. */
  private peerWinsCrossings(): boolean {
    return Buffer.compare(this.publicKey, this.host.identity.publicKey) > 0;
  }

  /** @internal Records a completed handshake for status and emits the event. */
  markHandshake(now: number, out: Action[]): void {
    this.stats.lastHandshakeAt = now;
    this.host.stats.handshakesCompleted++;
    out.push({ kind: 'handshakeComplete', peer: this });
  }

  /** @internal Fires every expired timer (wireguard-go's expired* functions). */
  tick(now: number, out: Action[]): void {
    const t = this.timers;
    if (t.retransmitHandshakeAt !== null && t.retransmitHandshakeAt <= now) {
      t.retransmitHandshakeAt = null;
      this.expiredRetransmitHandshake(now, out);
    }
    if (t.sendKeepaliveAt !== null && t.sendKeepaliveAt <= now) {
      t.sendKeepaliveAt = null;
      this.sendKeepalive(now, out);
      if (t.needAnotherKeepalive) {
        t.needAnotherKeepalive = false;
        t.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT;
      }
    }
    if (t.newHandshakeAt !== null && t.newHandshakeAt <= now) {
      t.newHandshakeAt = null;
      this.sendHandshakeInitiation(now, false, out);
    }
    if (t.zeroKeyMaterialAt !== null && t.zeroKeyMaterialAt <= now) {
      t.zeroKeyMaterialAt = null;
      this.zeroAndFlushAll();
    }
    if (t.persistentKeepaliveAt !== null && t.persistentKeepaliveAt <= now) {
      t.persistentKeepaliveAt = null;
      if (this.persistentKeepalive > 0) this.sendKeepalive(now, out);
    }
  }

  /** @internal Erases every key and staged packet (3 * REJECT_AFTER_TIME without a new session, or removal). */
  zeroAndFlushAll(): void {
    this.host.lingering.dropPeer(this);
    this.deleteKeypair(this.previous);
    this.deleteKeypair(this.current);
    this.deleteKeypair(this.next);
    this.previous = this.current = this.next = null;
    this.host.indexes.delete(this.handshake.localIndex);
    this.handshake.clear();
    this.staged = NO_STAGED;
  }

  private expiredRetransmitHandshake(now: number, out: Action[]): void {
    const t = this.timers;
    if (t.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
      // Give up: drop what waited for this handshake; erase partial state later.
      t.sendKeepaliveAt = null;
      this.dropStaged('handshakeGaveUp', out);
      if (t.zeroKeyMaterialAt === null) t.zeroKeyMaterialAt = now + 3 * REJECT_AFTER_TIME;
      return;
    }
    t.handshakeAttempts++;
    this.sendHandshakeInitiation(now, true, out);
  }

  private dropStaged(reason: 'handshakeGaveUp' | 'noEndpoint', out: Action[]): void {
    if (this.staged.length === 0) return;
    for (let i = 0; i < this.staged.length; i++) this.host.stats.drop(reason);
    this.staged = NO_STAGED;
    out.push({ kind: 'drop', reason, peer: this });
  }

  private afterSend(now: number, datagramBytes: number, keepaliveOnly: boolean): void {
    this.stats.txBytes += datagramBytes;
    this.timers.anyAuthenticatedPacketTraversal(now, this.persistentKeepalive * 1000);
    this.timers.anyAuthenticatedPacketSent();
    if (!keepaliveOnly) this.timers.dataSent(now, this.host.jitter());
  }

  /** Initiator rekeys after REKEY_AFTER_TIME; either side after REKEY_AFTER_MESSAGES. */
  private keepKeyFreshSending(now: number, out: Action[]): void {
    const kp = this.current;
    if (!kp) return;
    if (kp.sendCounter > REKEY_AFTER_MESSAGES || (kp.isInitiator && now - kp.createdAt > REKEY_AFTER_TIME)) {
      this.sendHandshakeInitiation(now, false, out);
    }
  }

  /** An initiator still receiving on a session about to be rejected starts one last handshake. */
  private keepKeyFreshReceiving(now: number, out: Action[]): void {
    if (this.timers.sentLastMinuteHandshake) return;
    const kp = this.current;
    if (kp && kp.isInitiator && now - kp.createdAt > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT) {
      this.timers.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(now, false, out);
    }
  }

  /** Responder key confirmation: first packet under `next` promotes it to current. */
  private receivedWithKeypair(kp: Keypair): boolean {
    if (this.next !== kp) return false;
    const old = this.previous;
    this.previous = this.current;
    this.deleteKeypair(old);
    this.current = kp;
    this.next = null;
    return true;
  }

  /**
   * A keypair pushed out of current/previous/next by a newer handshake: never sent under again,
   * but it opens what the peer still sends under it for LINGER_MS (as responder the peer sends
   * under its old current until our first packet under the new keypair reaches it; as initiator
   * of a keypair waiting in our `next`, from when our response reaches it until its own newer
   * initiation completes).
   */
  private linger(kp: Keypair | null, now: number): void {
    this.host.lingering.add(kp, now);
  }

  /**
   * The peer sent under current: it has moved off previous and sends nothing new under it (a
   * peer's sending keypair only ever moves to a newer one). Previous lingers, receive-only, for
   * what it sent before and is still in flight (LINGER_MS, a REKEY_TIMEOUT), then is erased.
   * wireguard-go and the kernel keep it until the next handshake (up to REKEY_AFTER_TIME, 2 min)
   * for the same stragglers; here its keypair, key slot and index entry (~250 B) are not kept
   * by every live peer for a state that lasts a round trip.
   */
  private letGoPrevious(now: number): void {
    this.linger(this.previous, now);
    this.previous = null;
  }

  private deleteKeypair(kp: Keypair | null): void {
    if (kp) this.host.indexes.eraseKeypair(kp);
  }
}
