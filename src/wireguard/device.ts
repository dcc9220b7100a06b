// The WireGuard device, sans-I/O (boringtun's shape): it holds the local static key, the peers
// (by public key) and the receiver-index table. Callers hand it bytes and the time, and perform
// the Actions it returns: datagrams to send, packets to write to the TUN device, key log lines.
//
// Clock: every `now` is milliseconds on one monotonic-or-wall clock chosen by the caller. TAI64N
// timestamps need Unix time; they use `now + wallClockOffsetMs` (default offset 0, i.e. pass
// Date.now(); with performance.now() pass performance.timeOrigin as the offset).
//
// Transport data takes one path, in two shapes: encapsulate()/decapsulate() handle a single
// packet (ChaCha20-Poly1305 here), a batch datapath frames and opens many at once (native AEAD).
// Both make every decision through the same calls: sendingKeypair() + frameTransport() to send,
// transportKeypair() -> open -> acceptTransport() -> innerPacket() to receive, then the peer's
// onDataSent()/receivedData() hooks. Handshake, cookie reply and any non-transport datagram always
// go through decapsulate().
import { isAllZero } from '../crypto/index.js';
import { MESSAGE_COOKIE_REPLY_TYPE, MESSAGE_INITIATION_TYPE, MESSAGE_RESPONSE_TYPE, MESSAGE_TRANSPORT_TYPE, REKEY_TIMEOUT_JITTER_MAX } from './constants.js';
import { CookieChecker } from './cookie.js';
import { endpointBytes, type Endpoint } from './endpoint.js';
import { HandshakeLimiter } from './handshake-limiter.js';
import { IndexTable } from './index-table.js';
import { LingeringKeypairs } from './lingering-keypairs.js';
import { KEYPAIR_SLOT_SIZE, type Keypair } from './keypair.js';
import {
  MAC2_FROM_END, checkTransport, messageType, parseCookieReply, parseInitiation, parseResponse, transportCounter, transportReceiver,
  type InitiationMessage, type ResponseMessage,
} from './messages.js';
import { StaticIdentity, consumeInitiation, consumeResponse, createResponse, staticStaticInto, type Handshake, type PendingInitiation } from './noise-handshake.js';
import { PEER_SLOT_SIZE, Peer, type PeerConfig, type PeerHost } from './peer.js';
import { TimerQueue } from './timer-queue.js';
import { SlotAllocator } from './slot-allocator.js';
import { DeviceStats, type DropReason } from './stats.js';
import { innerPacketLength, openTransport, sealTransport } from './transport.js';
import type { Action } from './actions.js';

/**
 * The peers map's key for a public key (raw bytes or standard base64): its 32 bytes as a Latin-1
 * string, the smallest string that names it (48 bytes of heap, base64 would take ~120).
 */
export function mapKey(publicKey: Uint8Array | string): string {
  return (typeof publicKey === 'string' ? Buffer.from(publicKey, 'base64') : Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength)).toString('latin1');
}

/** True when a handshake message's last 16 bytes (mac2) are all zero: its sender holds no cookie. */
function noMac2(datagram: Uint8Array): boolean {
  return datagram.length >= MAC2_FROM_END && isAllZero(datagram.subarray(datagram.length - MAC2_FROM_END));
}

export interface DeviceOptions {
  /** Our static X25519 private key, 32 raw bytes (clamped on use). */
  privateKey: Uint8Array;
  /** Tunnel MTU: transport plaintext padding never exceeds it. Default 1420; 0 = pad freely. */
  mtu?: number;
  /** Added to `now` to get Unix ms for TAI64N timestamps and status. Default 0. */
  wallClockOffsetMs?: number;
  /** Random source in [0, 1) for timer jitter (tests pass a seeded one). Default Math.random. */
  random?: () => number;
  /** Emit 'keylog' actions with the secrets of every handshake (Wireshark format). Default false. */
  keylog?: boolean;
  /**
   * Handshake messages a second above which the device is under load (mac2 required, per-source
   * rate limits; see handshake-limiter.ts) with few peers: more peers raise it (their own rekeys).
   * Default LOAD_THRESHOLD (100); benchmarks of raw handshake cost pass Infinity.
   */
  handshakeLoadThreshold?: number;
}

export class Device implements PeerHost {
  /** Our static identity: changes only by setStaticKey() (a static key rotation). */
  identity: StaticIdentity;
  /** Our public key, 32 bytes; base64 in publicKeyBase64. */
  publicKey: Uint8Array;
  publicKeyBase64: string;
  readonly stats = new DeviceStats();
  /** @internal PeerHost */
  readonly peerSlots = new SlotAllocator(PEER_SLOT_SIZE);
  /** @internal PeerHost */
  readonly keySlots = new SlotAllocator(KEYPAIR_SLOT_SIZE, 128);
  /** @internal receiver index -> handshake/keypair (its onKeypairErased: the datapath's hook) */
  readonly indexes = new IndexTable(this.keySlots);
  /** @internal PeerHost: keypairs pushed out by newer handshakes, receivable for LINGER_MS. */
  readonly lingering = new LingeringKeypairs(this.indexes);
  readonly mtu: number;
  keylog: boolean;
  /**
   * Set by the caller when it is overloaded (e.g. its handshake queue is long): handshake messages
   * then need a valid mac2, and senders without one get a cookie reply.
   */
  underLoad = false;
  private readonly peersByKey = new Map<string, Peer>();
  /** Peers by the next key their node announced (a rotation in progress). */
  private readonly peersByNextKey = new Map<string, Peer>();
  private cookieChecker: CookieChecker;
  /** identity and cookieChecker as one object (what addressee() answers, no object per message). */
  private addressed: { identity: StaticIdentity; checker: CookieChecker };
  /** During a static key rotation, the identity we rotated away from: initiations to it are still answered. */
  private retiring: { identity: StaticIdentity; checker: CookieChecker } | null = null;
  /** Scratch for a static-static DH computed on demand (rotation). */
  private readonly dhScratch = new Uint8Array(32);
  private readonly limiter: HandshakeLimiter;
  /** The peers by their earliest timer deadline (tick() visits the due ones, not every peer). */
  private readonly timerQueue = new TimerQueue<Peer>();
  /** Peers tick() visited, since the device was made (peersTicked). */
  private ticked = 0;
  /** Whether the handshake message being handled arrived under load (set by admitHandshake). */
  private loaded = false;
  private readonly wallClockOffsetMs: number;
  private readonly random: () => number;

  constructor(options: DeviceOptions) {
    this.identity = new StaticIdentity(options.privateKey);
    this.publicKey = this.identity.publicKey;
    this.publicKeyBase64 = Buffer.from(this.publicKey).toString('base64');
    this.cookieChecker = new CookieChecker(this.publicKey);
    this.addressed = { identity: this.identity, checker: this.cookieChecker };
    this.mtu = options.mtu ?? 1420;
    this.wallClockOffsetMs = options.wallClockOffsetMs ?? 0;
    this.random = options.random ?? Math.random;
    this.keylog = options.keylog ?? false;
    this.limiter = new HandshakeLimiter(options.handshakeLoadThreshold);
  }

  /** @internal PeerHost */
  jitter(): number {
    return Math.floor(this.random() * REKEY_TIMEOUT_JITTER_MAX);
  }

  /** @internal PeerHost */
  wallClock(now: number): number {
    return now + this.wallClockOffsetMs;
  }

  // ---- peers -------------------------------------------------------------------------------

  /**
   * Adds a peer, or returns the existing one with that key after updating its endpoint and
   * keepalive. Throws RangeError for a key that is not 32 bytes, is all zero, or is our own.
   */
  addPeer(config: PeerConfig): Peer {
    if (config.publicKey.length !== 32 || isAllZero(config.publicKey)) throw new RangeError('peer public key must be 32 non-zero bytes');
    if (Buffer.from(config.publicKey).equals(Buffer.from(this.publicKey))) throw new RangeError('a peer cannot use our own public key');
    if (config.presharedKey && config.presharedKey.length !== 32) throw new RangeError('preshared key must be 32 bytes');
    const existing = this.peersByKey.get(mapKey(config.publicKey));
    if (!existing && this.peersByNextKey.has(mapKey(config.publicKey))) throw new RangeError('another peer announced this public key as its next key');
    if (existing) {
      if (config.endpoint !== undefined) existing.endpoint = config.endpoint;
      if (config.persistentKeepalive !== undefined) existing.persistentKeepalive = config.persistentKeepalive;
      return existing;
    }
    const peer = new Peer(this, config);
    this.peersByKey.set(peer.keyName = mapKey(peer.publicKey), peer);
    return peer;
  }

  /** Removes a peer and erases its keys. Returns false if unknown. */
  removePeer(publicKey: Uint8Array | string): boolean {
    const key = mapKey(publicKey);
    const peer = this.peersByKey.get(key);
    if (!peer) return false;
    peer.zeroAndFlushAll();
    peer.timers.stopAll();
    this.timerQueue.retire(peer); // its entries are stale now, and it is never queued again
    this.forgetKeys(peer);
    this.peersByKey.delete(key);
    this.peerSlots.release(peer.leaveSlot());
    return true;
  }

  /** The peer with this public key (raw bytes or standard base64), or whose announced next key it is. */
  peer(publicKey: Uint8Array | string): Peer | undefined {
    const key = mapKey(publicKey);
    return this.peersByKey.get(key) ?? this.peersByNextKey.get(key);
  }

  peers(): IterableIterator<Peer> {
    return this.peersByKey.values();
  }

  get peerCount(): number {
    return this.peersByKey.size;
  }

  // ---- single-packet data path ---------------------------------------------------------------

  /**
   * Encrypts an inner IP packet for `peer`. With a usable session: one 'network' action. Without:
   * the packet is staged (copied) and a 'queued' action comes back, with a handshake initiation
   * to send when one is due. The packet buffer may be reused by the caller afterwards.
   */
  encapsulate(peer: Peer, packet: Uint8Array, now: number): Action[] {
    const out: Action[] = [];
    const kp = this.sendingKeypair(peer, now);
    const datagram = kp ? sealTransport(kp, packet, this.mtu) : null;
    const endpoint = peer.endpoint;
    if (datagram && endpoint) {
      this.stats.dataPacketsSent++;
      out.push({ kind: 'network', peer, endpoint, datagram });
      for (const a of peer.onDataSent(now, datagram.length, packet.length === 0)) out.push(a);
      return out;
    }
    peer.stage(packet, out);
    peer.sendStaged(now, out);
    if (peer.staged.length > 0) out.push({ kind: 'queued', peer });
    return out;
  }

  /**
   * Handles one datagram received from `source`. Returns what to do: 'tunnel' (decrypted packet
   * from a peer), 'network' (handshake response, cookie reply, staged packets, keepalive),
   * 'drop' (counted in stats.drops), 'keylog', 'handshakeComplete'. Never throws on bad input.
   */
  decapsulate(datagram: Uint8Array, source: Endpoint, now: number): Action[] {
    const out: Action[] = [];
    switch (messageType(datagram)) {
      case MESSAGE_TRANSPORT_TYPE:
        this.receiveTransport(datagram, source, now, out);
        break;
      case MESSAGE_INITIATION_TYPE:
        if (this.admitHandshake(datagram, source, now, out)) this.receiveInitiation(datagram, source, now, out);
        break;
      case MESSAGE_RESPONSE_TYPE:
        if (this.admitHandshake(datagram, source, now, out)) this.receiveResponse(datagram, source, now, out);
        break;
      case MESSAGE_COOKIE_REPLY_TYPE:
        this.receiveCookieReply(datagram, now, out);
        break;
      default:
        this.dropped(datagram.length < 4 ? 'badLength' : 'badType', null, out);
    }
    return out;
  }

  /** Fires every expired timer of every peer: retransmits, keepalives, rekeys, key erasure. */
  tick(now: number): Action[] {
    const out: Action[] = [];
    this.lingering.expire(now);
    // Only the peers queued at a deadline <= now (timer-queue.ts): every armed timer queued its peer.
    for (let peer = this.timerQueue.takeDue(now); peer !== null; peer = this.timerQueue.takeDue(now)) {
      this.ticked++;
      peer.tick(now, out);
      const p = peer.nextDeadline(); // after its own timers fired: a peer's tick arms only its own
      if (p !== null) this.timerQueue.schedule(peer, Math.max(p, now + 1)); // never due again in this tick
    }
    return out;
  }

  /** Peers tick() visited since the device was made (for tests and benches: a tick visits the due ones only). */
  get peersTicked(): number {
    return this.ticked;
  }

  /** Earliest timer deadline over all peers (device clock), null when all are idle. */
  nextDeadline(): number | null {
    const l = this.lingering.nextDeadline;
    const p = this.earliestTimer();
    return l !== null && (p === null || l < p) ? l : p;
  }

  /**
   * The queue's top made exact: a peer queued earlier than its timers now are (one stopped, as a
   * probe sent stops the keepalive its last ack armed) is requeued at its real deadline, so the
   * loop does not wake for a tick that fires nothing (as the walk's deadline never did).
   */
  private earliestTimer(): number | null {
    const q = this.timerQueue;
    for (let peer = q.top(); peer !== null; peer = q.top()) {
      const at = peer.queuedAt, real = peer.nextDeadline();
      if (real === at) return at;
      q.takeDue(at);
      if (real !== null) q.schedule(peer, real);
    }
    return null;
  }

  /** @internal PeerHost: a timer was armed; the peer is queued by it unless it is already as early. */
  timerArmed(peer: Peer, at: number): void {
    this.timerQueue.schedule(peer, at);
  }

  /** Starts a handshake with `peer` now, ignoring the REKEY_TIMEOUT rate limit (forced rekey). */
  initiateHandshake(peer: Peer, now: number): Action[] {
    const out: Action[] = [];
    peer.handshake.lastSentHandshake = null;
    peer.sendHandshakeInitiation(now, false, out);
    return out;
  }

  // ---- static key rotation --------------------------------------------------------------------

  /**
   * Switches our static key (a rotation with no loss): handshakes from now on use the new key,
   * initiations addressed to the old one are still answered until retirePreviousKey(), and every
   * peer with an endpoint gets a new initiation now, so each confirms the new key (existing
   * sessions go on meanwhile: they do not depend on static keys). Returns those initiations.
   */
  setStaticKey(privateKey: Uint8Array, now: number): Action[] {
    const identity = new StaticIdentity(privateKey);
    if (Buffer.compare(identity.publicKey, this.publicKey) === 0) return [];
    for (const p of this.peersByKey.values()) {
      if (Buffer.compare(p.publicKey, identity.publicKey) === 0) throw new RangeError('a peer already uses this public key');
    }
    this.retiring?.identity.privateKey.zero();
    this.retiring = { identity: this.identity, checker: this.cookieChecker };
    this.identity = identity;
    this.publicKey = identity.publicKey;
    this.publicKeyBase64 = Buffer.from(this.publicKey).toString('base64');
    this.cookieChecker = new CookieChecker(this.publicKey);
    this.addressed = { identity: this.identity, checker: this.cookieChecker };
    const out: Action[] = [];
    for (const p of this.peersByKey.values()) {
      p.handshake.resetStaticStatic(identity);
      if (p.endpoint) for (const a of this.initiateHandshake(p, now)) out.push(a);
    }
    return out;
  }

  /** The public key we rotated away from and still answer for (base64), or null. */
  get retiringPublicKeyBase64(): string | null {
    return this.retiring ? Buffer.from(this.retiring.identity.publicKey).toString('base64') : null;
  }

  /** Ends a rotation: initiations to the old key are refused from now on. False when none was retiring. */
  retirePreviousKey(): boolean {
    if (!this.retiring) return false;
    this.retiring.identity.privateKey.zero();
    this.retiring = null;
    return true;
  }

  /** True when the latest handshake with `peer` used our current static key. */
  peerOnCurrentKey(peer: Peer): boolean {
    return peer.ourKeyAtHandshake === this.publicKey;
  }

  /**
   * The peer's node rotated its key: the peer is the same (sessions, endpoint, timers, counters
   * stay), under `publicKey` from now on. Throws RangeError for a key another peer or we hold.
   */
  changePeerKey(peer: Peer, publicKey: Uint8Array): void {
    if (Buffer.compare(peer.publicKey, publicKey) === 0) return;
    this.checkNewPeerKey(publicKey, peer);
    this.forgetKeys(peer);
    peer.changeKey(publicKey);
    this.peersByKey.set(peer.keyName = mapKey(peer.publicKey), peer);
    if (peer.nextPublicKey) this.peersByNextKey.set(mapKey(peer.nextPublicKey), peer);
  }

  /** Accepts initiations from `nextKey` as `peer`'s (its node announced that key), or stops (null). */
  setPeerNextKey(peer: Peer, nextKey: Uint8Array | null): void {
    if (nextKey && (Buffer.compare(nextKey, peer.publicKey) === 0 || (peer.nextPublicKey && Buffer.compare(nextKey, peer.nextPublicKey) === 0))) return;
    if (nextKey) this.checkNewPeerKey(nextKey, peer);
    if (peer.nextPublicKey) this.peersByNextKey.delete(mapKey(peer.nextPublicKey));
    peer.nextPublicKey = nextKey ? Uint8Array.from(nextKey) : null;
    if (nextKey) this.peersByNextKey.set(mapKey(nextKey), peer);
  }

  private checkNewPeerKey(key: Uint8Array, peer: Peer): void {
    if (key.length !== 32 || isAllZero(key)) throw new RangeError('peer public key must be 32 non-zero bytes');
    if (Buffer.compare(key, this.publicKey) === 0) throw new RangeError('a peer cannot use our own public key');
    const holder = this.peer(key);
    if (holder && holder !== peer) throw new RangeError('another peer already uses this public key');
  }

  /** Removes the peer's keys (its own and its next one) from the key map. */
  private forgetKeys(peer: Peer): void {
    this.peersByKey.delete(peer.keyName);
    if (peer.nextPublicKey) this.peersByNextKey.delete(mapKey(peer.nextPublicKey));
  }

  // ---- transport data, one packet or a batch -----------------------------------------------

  /**
   * The keypair to send `peer`'s next packet under now (frame it with frameTransport()), or null:
   * no usable session, packets already waiting for one (they keep their order), or no endpoint to
   * send to. Then hand the packet to encapsulate(), which stages it and starts a handshake.
   */
  sendingKeypair(peer: Peer, now: number): Keypair | null {
    if (peer.staged.length !== 0 || !peer.endpoint) return null;
    return peer.currentSendKeypair(now);
  }

  /** The live keypair our index `idx` names (the receiver field of a transport message), or undefined. */
  keypairByReceiverIndex(idx: number): Keypair | undefined {
    const kp = this.indexes.keypair(idx);
    return kp && kp.isAlive ? kp : undefined;
  }

  /**
   * Receiving transport data, before any crypto: the keypair that may open the datagram at
   * buf[off..off+len), or null when it is malformed, names no live keypair of ours, comes too late
   * for it, or repeats a counter already accepted. A null is a drop, counted (and added to `out`
   * when given). Open with the keypair's receiveKey and the counter's nonce, then acceptTransport().
   */
  transportKeypair(buf: Uint8Array, off: number, len: number, now: number, out: Action[] | null = null): Keypair | null {
    const bad = checkTransport(buf, off, len);
    if (bad) return this.refused(bad, null, out);
    const kp = this.keypairByReceiverIndex(transportReceiver(buf, off));
    if (!kp) return this.refused('unknownReceiverIndex', null, out);
    if (!kp.canReceive(now)) return this.refused('keypairExpired', kp.peer, out);
    if (!kp.replay.wouldAccept(transportCounter(buf, off))) return this.refused('replay', kp.peer, out);
    return kp;
  }

  /**
   * Receiving transport data, after the AEAD: true when the packet is accepted (its counter is
   * recorded in the replay window); false, a counted drop, when it did not authenticate or when a
   * copy of it was accepted since transportKeypair() (e.g. earlier in the same batch). Then call
   * the peer's receivedData hook, and innerPacket() unless the plaintext is empty (a keepalive).
   */
  acceptTransport(kp: Keypair, counter: number, authentic: boolean, out: Action[] | null = null): boolean {
    const reason: DropReason | null = !authentic ? 'decryptFailed' : !kp.replay.check(counter) ? 'replay' : null;
    if (reason) this.dropped(reason, kp.peer, out);
    return reason === null;
  }

  /**
   * The length of the IP packet in the accepted plaintext buf[off..off+len) (padding cut off), or
   * -1 when it is no consistent IPv4/IPv6 packet (a counted drop).
   */
  innerPacket(buf: Uint8Array, off: number, len: number, peer: Peer, out: Action[] | null = null): number {
    const length = innerPacketLength(buf, off, len);
    if (length < 0) this.dropped('invalidInnerPacket', peer, out);
    return length;
  }

  // ---- receive internals -----------------------------------------------------------------

  /** Counts a drop, and reports it in `out` when there is one. */
  private dropped(reason: DropReason, peer: Peer | null, out: Action[] | null): void {
    this.stats.drop(reason);
    out?.push({ kind: 'drop', reason, peer });
  }

  /** dropped(), for the transport checks that answer null or false. */
  private refused(reason: DropReason, peer: Peer | null, out: Action[] | null): null {
    this.dropped(reason, peer, out);
    return null;
  }

  private receiveTransport(datagram: Uint8Array, source: Endpoint, now: number, out: Action[]): void {
    const kp = this.transportKeypair(datagram, 0, datagram.length, now, out);
    if (!kp) return;
    const counter = transportCounter(datagram);
    const plaintext = openTransport(kp, counter, datagram);
    if (!this.acceptTransport(kp, counter, plaintext !== null, out)) return;
    const peer = kp.peer;
    peer.receivedData(kp, now, source, plaintext!.length, 1, out);
    if (plaintext!.length === 0) return; // keepalive
    const length = this.innerPacket(plaintext!, 0, plaintext!.length, peer, out);
    if (length >= 0) out.push({ kind: 'tunnel', peer, packet: plaintext!.subarray(0, length) });
  }

  /**
   * Admission before any parsing or crypto, device-wide only: under load (the caller's flag, or more
   * handshake messages a second than the limiter's threshold for this many peers), once the cookie-reply budget is spent a message
   * without mac2 (it could only earn a cookie reply) is dropped unread. Nothing here is charged to a
   * source address: a forged message carries any address it likes (see checkMacs).
   */
  private admitHandshake(datagram: Uint8Array, source: Endpoint, now: number, out: Action[]): boolean {
    const loaded = this.limiter.arrive(now, this.peerCount) || this.underLoad;
    this.loaded = loaded;
    if (loaded && this.limiter.cookieBudgetSpent(now) && noMac2(datagram)) {
      this.dropped('handshakeRateLimited', null, out);
      return false;
    }
    return true;
  }

  /**
   * The identity a handshake message is addressed to, by its mac1 (keyed by the receiver's public
   * key): ours, or during a rotation the retiring one. Ours when neither matches (mac1 then fails).
   */
  private addressee(datagram: Uint8Array): { identity: StaticIdentity; checker: CookieChecker } {
    if (this.retiring && !this.cookieChecker.checkMac1(datagram) && this.retiring.checker.checkMac1(datagram)) return this.retiring;
    return this.addressed;
  }

  /**
   * In the protocol's order (the kernel's cookie.c, wireguard-go): mac1 always; under load a valid
   * mac2 or we answer with a cookie reply; only then, under load, the source's own rate. A message
   * that reaches the source's token bucket has proved (mac2) that its sender receives at that
   * address, so forged messages bearing a peer's address cannot spend that peer's budget.
   */
  private checkMacs(datagram: Uint8Array, sender: number, source: Endpoint, now: number, out: Action[], checker = this.cookieChecker): boolean {
    if (!checker.checkMac1(datagram)) {
      this.dropped('mac1Invalid', null, out);
      return false;
    }
    if (!this.loaded) return true;
    const src = endpointBytes(source);
    if (!checker.checkMac2(datagram, src, now)) {
      if (!this.limiter.admitCookieReply(now)) {
        this.dropped('handshakeRateLimited', null, out);
        return false;
      }
      const reply = checker.createReply(datagram, sender, src, now);
      this.stats.cookieRepliesSent++;
      this.dropped('mac2Required', null, out);
      out.push({ kind: 'network', peer: null, endpoint: source, datagram: reply });
      return false;
    }
    if (!this.limiter.admitSource(source.address, now)) {
      this.dropped('handshakeRateLimited', null, out);
      return false;
    }
    return true;
  }

  /**
   * Every valid initiation is answered and its source becomes the peer's endpoint, as kernel
   * WireGuard and wireguard-go do: a peer whose own path to us is one-way (stale endpoint, NAT,
   * lost responses) still gets its session. When the peer's initiation crosses one of ours, ours
   * is set aside while we answer and then goes on waiting for its response, so whichever response
   * arrives completes a session within one round trip (see Peer.beginSymmetricSession for which
   * of the two sessions both sides end up sending with).
   */
  private receiveInitiation(datagram: Uint8Array, source: Endpoint, now: number, out: Action[]): void {
    const msg: InitiationMessage | DropReason = parseInitiation(datagram);
    if (typeof msg === 'string') return this.dropped(msg, null, out);
    const to = this.addressee(datagram);
    if (!this.checkMacs(datagram, msg.sender, source, now, out, to.checker)) return;
    let peer: Peer | undefined;
    let ours = null as PendingInitiation | null;
    let fromNextKey = false;
    const lookup = (remoteStatic: Uint8Array): Handshake | undefined => {
      peer = this.peer(remoteStatic);
      fromNextKey = !!peer?.nextPublicKey && Buffer.compare(peer.nextPublicKey, remoteStatic) === 0;
      ours = peer?.handshake.suspendInitiation() ?? null;
      return peer?.handshake;
    };
    // Rotation: to our retiring key, or from the peer's next key, the precomputed DH does not apply.
    const staticStatic = (hs: Handshake, remoteStatic: Uint8Array): Uint8Array | null =>
      to.identity === this.identity && !fromNextKey ? hs.precomputedStaticStatic : staticStaticInto(this.dhScratch, to.identity, remoteStatic);
    try {
      const hs = consumeInitiation(to.identity, msg, lookup, now, staticStatic);
      this.dhScratch.fill(0);
      if (typeof hs === 'string') return this.dropped(hs, peer ?? null, out);
      // The peer proved it holds its announced next key: that is its key from now on (the response is made for it).
      if (fromNextKey) this.changePeerKey(peer!, peer!.nextPublicKey!);
      // Answering under our current key confirms it; under the retiring one confirms nothing (and
      // never undoes a confirmation: that peer had authenticated our new key before).
      if (to.identity === this.identity) peer!.ourKeyAtHandshake = this.publicKey;
      this.respond(peer!, hs, source, now, out);
    } finally {
      if (ours) peer!.handshake.resumeInitiation(ours);
    }
  }

  /** Answers a consumed initiation (wireguard-go's SendHandshakeResponse) at its source. */
  private respond(p: Peer, hs: Handshake, source: Endpoint, now: number, out: Action[]): void {
    p.timers.anyAuthenticatedPacketTraversal(now, p.persistentKeepalive * 1000);
    p.timers.anyAuthenticatedPacketReceived();
    p.roam(source);
    const index = this.indexes.newIndexForHandshake(p);
    const response = createResponse(hs, index);
    if (!response) {
      this.indexes.delete(index);
      hs.clear();
      return this.dropped('handshakeDecryptFailed', p, out);
    }
    p.addMacs(response, now);
    hs.lastSentHandshake = now;
    if (this.keylog && hs.localEphemeral) out.push({ kind: 'keylog', text: p.keylogText(hs.localEphemeral) });
    p.beginSymmetricSession(now);
    p.timers.anyAuthenticatedPacketTraversal(now, p.persistentKeepalive * 1000);
    p.timers.anyAuthenticatedPacketSent();
    this.stats.handshakeResponsesSent++;
    out.push({ kind: 'network', peer: p, endpoint: source, datagram: response });
  }

  private receiveResponse(datagram: Uint8Array, source: Endpoint, now: number, out: Action[]): void {
    const msg: ResponseMessage | DropReason = parseResponse(datagram);
    if (typeof msg === 'string') return this.dropped(msg, null, out);
    if (!this.checkMacs(datagram, msg.sender, source, now, out, this.addressee(datagram).checker)) return;
    const peer = this.indexes.handshakePeer(msg.receiver);
    if (!peer) return this.dropped('unknownReceiverIndex', null, out);
    const bad = consumeResponse(this.identity, peer.handshake, msg);
    if (bad) return this.dropped(bad, peer, out);
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive * 1000);
    peer.timers.anyAuthenticatedPacketReceived();
    peer.roam(source);
    // The peer authenticated us under our current key (our initiations always use it), even if a
    // crossing makes the other session the one kept.
    peer.ourKeyAtHandshake = this.publicKey;
    if (!peer.beginSymmetricSession(now)) return this.dropped('unexpectedResponse', peer, out);
    peer.timers.handshakeComplete();
    peer.markHandshake(now, out);
    peer.sendKeepalive(now, out); // staged packets, or a keepalive to confirm the session
  }

  private receiveCookieReply(datagram: Uint8Array, now: number, out: Action[]): void {
    const msg = parseCookieReply(datagram);
    if (typeof msg === 'string') return this.dropped(msg, null, out);
    const peer = this.indexes.peerOf(msg.receiver);
    if (!peer) return this.dropped('unknownReceiverIndex', null, out);
    if (!peer.cookieGenerator.consumeReply(msg, now)) return this.dropped('cookieDecryptFailed', peer, out);
    this.stats.cookieRepliesReceived++;
  }
}
