// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (paper §5.4.2–5.4.4): the per-peer
// handshake state and the four steps (create/consume initiation, create/consume response), then
// the derivation of the transport keys. Pure: bytes and a clock in, bytes and state out.
//
// Cost: with the addon, each step is one native call (native/noise-handshake.c) that makes all
// of a message's hashes, KDFs, AEADs and DHs on the handshake's work slab; the steps below on the
// primitives serve without it (and prove it computes the same bytes). Either way no per-step
// arrays and no key objects. A peer's idle Handshake holds only what outlives a handshake (its
// keys, the replay timestamp); the in-flight state (HandshakeWork, pooled) exists only between the
// first step and the session keys.
import {
  X25519PrivateKey, generatePrivateKey, x25519Into, hash, hashInto, kdfInto, aeadSealInto, aeadOpenInto,
  zeroize, clampPrivateKey, AEAD_NONCE_SIZE,
} from '../crypto/index.js';
import { noise } from '../crypto/native-backend.js';
import { HANDSHAKE_INITIATION_RATE, NOISE_CONSTRUCTION, WG_IDENTIFIER } from './constants.js';
import { newInitiation, newResponse, type InitiationMessage, type ResponseMessage } from './messages.js';
import { TAI64N_SIZE, tai64nAfter } from './tai64n.js';
import type { DropReason } from './stats.js';

const enc = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
export const INITIAL_CHAIN_KEY = hash(enc(NOISE_CONSTRUCTION));
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, enc(WG_IDENTIFIER));
const ZERO_NONCE = new Uint8Array(AEAD_NONCE_SIZE);
const EMPTY = new Uint8Array(0);
/** The preshared key of peers configured without one (never written). */
const NO_PRESHARED_KEY = new Uint8Array(32);

export const enum HandshakeState {
  Zeroed = 0,
  InitiationCreated = 1,
  InitiationConsumed = 2,
  ResponseCreated = 3,
  ResponseConsumed = 4,
}

/** The device's long-term identity. */
export class StaticIdentity {
  readonly privateKey: X25519PrivateKey;
  readonly publicKey: Uint8Array;
  /** HASH(INITIAL_HASH || our public key): the responder's first hash, the same for every initiation. */
  readonly responderInitialHash: Uint8Array;

  constructor(privateKey: Uint8Array | X25519PrivateKey) {
    this.privateKey = privateKey instanceof X25519PrivateKey ? privateKey : new X25519PrivateKey(privateKey);
    this.publicKey = this.privateKey.publicKey;
    this.responderInitialHash = hash(INITIAL_HASH, this.publicKey);
  }
}

/**
 * The state of one handshake in flight, in one 256-byte slab (native/noise-handshake.c's layout):
 * hash h, then chaining key ck followed by the two KDF outputs after it (so KDF2/KDF3 write
 * ck || t1 || t2 in one call), a DH scratch, the remote ephemeral, and our ephemeral key pair.
 * The fields are views made when read: the native steps take the whole slab, and ten views made
 * with every slab were most of its cost (a burst of initiations outruns the spares below).
 */
/** Where each field of a work slab starts (native/noise-handshake.c's layout); END is the slab's size. */
const enum Work {
  H = 0, CK = 32, T1 = 64, T2 = 96, DH = 128, REMOTE_EPHEMERAL = 160, EPHEMERAL = 192, EPHEMERAL_PUBLIC = 224, END = 256,
}

class HandshakeWork {
  readonly slab = new Uint8Array(Work.END);
  get h(): Uint8Array { return this.slab.subarray(Work.H, Work.CK); }
  get ck(): Uint8Array { return this.slab.subarray(Work.CK, Work.T1); }
  get t1(): Uint8Array { return this.slab.subarray(Work.T1, Work.T2); }
  get t2(): Uint8Array { return this.slab.subarray(Work.T2, Work.DH); }
  get kdf2(): Uint8Array { return this.slab.subarray(Work.CK, Work.T2); } // ck || t1
  get kdf3(): Uint8Array { return this.slab.subarray(Work.CK, Work.DH); } // ck || t1 || t2
  get dh(): Uint8Array { return this.slab.subarray(Work.DH, Work.REMOTE_EPHEMERAL); }
  get remoteEphemeral(): Uint8Array { return this.slab.subarray(Work.REMOTE_EPHEMERAL, Work.EPHEMERAL); }
  get ephemeral(): Uint8Array { return this.slab.subarray(Work.EPHEMERAL, Work.EPHEMERAL_PUBLIC); }
  get ephemeralPublic(): Uint8Array { return this.slab.subarray(Work.EPHEMERAL_PUBLIC, Work.END); }
  /** True while it waits among the spares (a second release must never hand it out twice). */
  spare = false;
}

/** Copies slab bytes [start, end) of one work to the same place in another. */
function copyWork(to: HandshakeWork, from: HandshakeWork, start: Work, end: Work): void {
  to.slab.set(from.slab.subarray(start, end), start);
}

/**
 * Zeroed work slabs of finished handshakes, reused: a handshake then allocates no slab (each was
 * a malloc'd ArrayBuffer and its views). Bounded: a burst of thousands leaves at most this many.
 */
const spareWork: HandshakeWork[] = [];
const SPARE_WORK_MAX = 64;

function takeWork(): HandshakeWork {
  const w = spareWork.pop();
  if (!w) return new HandshakeWork();
  w.spare = false;
  return w;
}

function releaseWork(w: HandshakeWork): void {
  zeroize(w.slab);
  if (w.spare || spareWork.length >= SPARE_WORK_MAX) return;
  w.spare = true;
  spareWork.push(w);
}

/** Our ephemeral in w as a key object, for the primitives' X25519 (the path without the addon). */
function ephemeralKey(w: HandshakeWork): X25519PrivateKey {
  return new X25519PrivateKey(w.ephemeral, undefined, w.ephemeralPublic);
}

/** A fresh ephemeral key pair into w (without the addon; the native steps make their own). */
function newEphemeral(w: HandshakeWork): void {
  const eph = generatePrivateKey();
  w.ephemeral.set(eph.raw);
  w.ephemeralPublic.set(eph.publicKey);
  eph.zero();
}

/**
 * @internal Tests only: when set, the next handshake steps use this ephemeral private key instead
 * of a fresh one (to compare the native steps with the primitives' byte for byte). Null: fresh.
 */
export let fixedEphemeralForTests: Uint8Array | null = null;
export function setFixedEphemeralForTests(key: Uint8Array | null): void {
  fixedEphemeralForTests = key;
}

/** Puts our ephemeral into w: fixed (tests) or, without the addon, fresh. Returns the native generate flag. */
function prepareEphemeral(w: HandshakeWork): number {
  if (fixedEphemeralForTests) {
    w.ephemeral.set(fixedEphemeralForTests);
    clampPrivateKey(w.ephemeral);
    if (!noise) w.ephemeralPublic.set(new X25519PrivateKey(fixedEphemeralForTests).publicKey);
    return 0;
  }
  if (!noise) newEphemeral(w);
  return 1;
}

/** Responder scratch for an initiation not yet matched to a peer (the core is synchronous). */
const incoming = new HandshakeWork();
const incomingTimestamp = new Uint8Array(TAI64N_SIZE);
const incomingStatic = new Uint8Array(32);

/** Our initiation in flight, held apart while we answer a crossing initiation of the peer. */
export interface PendingInitiation {
  readonly work: HandshakeWork;
  readonly localIndex: number;
}

/** Bytes of a peer's long-lived handshake state (after its static key): DH(static, static) then the latest TAI64N. */
export const HANDSHAKE_STATE_SIZE = 32 + TAI64N_SIZE;

/**
 * Handshake state with one peer (wireguard-go's Handshake). What outlives a handshake lives in
 * a caller's slab (the Peer's one ArrayBuffer) at `offset`, read through short-lived views: a
 * peer then costs no typed array of its own for it.
 */
export class Handshake {
  state = HandshakeState.Zeroed;
  /** In-flight state (our ephemeral included): null while Zeroed. */
  work: HandshakeWork | null = null;
  /** Our index for this handshake (0 = none). */
  localIndex = 0;
  /** The peer's index: the receiver field of what we send. */
  remoteIndex = 0;
  presharedKey: Uint8Array;
  /**
   * Device-clock times, null for never: a -Infinity (a heap number) would make the field a double,
   * boxed in a heap number of its own in every handshake (16 B each); null and whole ms are not.
   */
  lastInitiationConsumption: number | null = null;
  lastSentHandshake: number | null = null;
  /** Where the peer's static key is (its 32 bytes at offset), the long-lived state after it. */
  private slab: Uint8Array;
  private offset: number;
  private staticStaticOk: boolean;

  /**
   * remoteStatic is copied to slab at offset (a Peer's slot has it there already), the
   * HANDSHAKE_STATE_SIZE bytes after it are the handshake's (default: a slab of its own);
   * presharedKey is copied.
   */
  constructor(local: StaticIdentity, remoteStatic: Uint8Array, presharedKey?: Uint8Array,
    slab: Uint8Array = new Uint8Array(32 + HANDSHAKE_STATE_SIZE), offset = 0) {
    slab.set(remoteStatic, offset);
    this.presharedKey = presharedKey ? Uint8Array.from(presharedKey) : NO_PRESHARED_KEY;
    this.slab = slab;
    this.offset = offset;
    this.staticStaticOk = x25519Into(slab.subarray(offset + 32, offset + 64), local.privateKey, remoteStatic);
  }

  /** @internal Moves the key and long-lived state to slab at offset (copied there first by the caller). */
  rehome(slab: Uint8Array, offset: number): void {
    this.slab = slab;
    this.offset = offset;
  }

  /**
   * The peer's static public key: a view of the slab made on each call (writes go to the slab).
   * A Peer keeps no view of its own (96 B a peer): its publicKey is this.
   */
  get remoteStatic(): Uint8Array {
    return this.slab.subarray(this.offset, this.offset + 32);
  }

  /** @internal Where the key is in stateSlab (a Peer's slot starts there). */
  get keyOffset(): number {
    return this.offset;
  }

  /**
   * @internal Recomputes DH(our static, peer static) after either key changed (a static key
   * rotation); the in-flight handshake and the replay timestamp are kept.
   */
  resetStaticStatic(local: StaticIdentity): void {
    this.staticStaticOk = x25519Into(this.slab.subarray(this.offset + 32, this.offset + 64), local.privateKey, this.remoteStatic);
  }

  /** @internal The slab its long-lived state is in (shared: the peers' slots chunk). */
  get stateSlab(): Uint8Array {
    return this.slab;
  }

  /** DH(our static, peer static), computed once; null when the peer key is unusable. */
  get precomputedStaticStatic(): Uint8Array | null {
    return this.staticStaticOk ? this.slab.subarray(this.offset + 32, this.offset + 64) : null;
  }

  /** Latest TAI64N accepted from the peer: initiations not newer than this are replays. */
  get lastTimestamp(): Uint8Array {
    return this.slab.subarray(this.offset + 64, this.offset + 32 + HANDSHAKE_STATE_SIZE);
  }

  /** Our ephemeral private key of the handshake in flight (key log), or null. */
  get localEphemeral(): Uint8Array | null {
    return this.work && (this.state === HandshakeState.InitiationCreated || this.state === HandshakeState.ResponseCreated)
      ? this.work.ephemeral : null;
  }

  /** Forgets the in-flight handshake (keeps the replay/flood memory). */
  clear(): void {
    if (this.work) releaseWork(this.work);
    this.work = null;
    this.localIndex = 0;
    this.state = HandshakeState.Zeroed;
  }

  /**
   * @internal Sets our initiation in flight aside (the peer's initiation crossed it and is being
   * answered in this same state), so a response to ours can still complete it. Null when none.
   */
  suspendInitiation(): PendingInitiation | null {
    if (this.state !== HandshakeState.InitiationCreated || !this.work) return null;
    const pending: PendingInitiation = { work: this.work, localIndex: this.localIndex };
    this.work = null;
    this.localIndex = 0;
    this.state = HandshakeState.Zeroed;
    return pending;
  }

  /** @internal Puts a suspended initiation back, after the answer to the peer's is done. */
  resumeInitiation(pending: PendingInitiation): void {
    this.clear();
    this.work = pending.work;
    this.localIndex = pending.localIndex;
    this.state = HandshakeState.InitiationCreated;
  }

  /** @internal Clears, then gives the handshake a fresh zeroed in-flight state. */
  begin(): HandshakeWork {
    this.clear();
    return (this.work = takeWork());
  }
}

/** ck = KDF1(ck, input) in place (the KDF reads the chaining key before writing). */
function mixKey(w: HandshakeWork, input: Uint8Array): void {
  kdfInto(w.ck, w.ck, input);
}

/** Step 1 (initiator): a serialized initiation with mac1/mac2 left zero for the cookie layer. */
export function createInitiation(local: StaticIdentity, hs: Handshake, senderIndex: number, timestamp: Uint8Array): Uint8Array | null {
  const staticStatic = hs.precomputedStaticStatic;
  if (!staticStatic) return null;
  const w = hs.begin();
  const { bytes: msg, fields } = newInitiation(senderIndex);
  const generate = prepareEphemeral(w);
  if (noise) {
    if (noise.noiseCreateInitiation(w.slab, msg, local.publicKey, hs.remoteStatic, staticStatic, timestamp, generate) !== 1) {
      hs.clear();
      return null;
    }
  } else if (!initiationOnPrimitives(local, hs, w, fields, staticStatic, timestamp)) {
    hs.clear();
    return null;
  }
  hs.localIndex = senderIndex;
  hs.state = HandshakeState.InitiationCreated;
  return msg;
}

function initiationOnPrimitives(local: StaticIdentity, hs: Handshake, w: HandshakeWork, fields: InitiationMessage,
  staticStatic: Uint8Array, timestamp: Uint8Array): boolean {
  fields.ephemeral.set(w.ephemeralPublic);
  hashInto(w.h, INITIAL_HASH, hs.remoteStatic);
  hashInto(w.h, w.h, w.ephemeralPublic);
  kdfInto(w.ck, INITIAL_CHAIN_KEY, w.ephemeralPublic);
  if (!x25519Into(w.dh, ephemeralKey(w), hs.remoteStatic)) return false;
  kdfInto(w.kdf2, w.ck, w.dh);
  const encryptedStatic = aeadSealInto(fields.encryptedStatic, w.t1, ZERO_NONCE, local.publicKey, w.h);
  hashInto(w.h, w.h, encryptedStatic);
  kdfInto(w.kdf2, w.ck, staticStatic);
  const encryptedTimestamp = aeadSealInto(fields.encryptedTimestamp, w.t1, ZERO_NONCE, timestamp, w.h);
  hashInto(w.h, w.h, encryptedTimestamp);
  zeroize(w.t1, w.dh);
  return true;
}

/** DH(local, remote) into out (32 bytes), or null for an unusable key: a static-static DH computed on demand. */
export function staticStaticInto(out: Uint8Array, local: StaticIdentity, remote: Uint8Array): Uint8Array | null {
  return x25519Into(out, local.privateKey, remote) ? out : null;
}

/**
 * Step 2 (responder): decrypts an initiation, finds the peer by its static key (lookup), checks
 * the timestamp against replay and the flood rate, and stores the state in that peer's Handshake.
 * Returns that Handshake, or why the message was dropped.
 */
export function consumeInitiation(
  local: StaticIdentity, msg: InitiationMessage, lookup: (remoteStatic: Uint8Array) => Handshake | undefined, now: number,
  staticStaticOf: (hs: Handshake, remoteStatic: Uint8Array) => Uint8Array | null = (hs) => hs.precomputedStaticStatic,
): Handshake | DropReason {
  const w = incoming;
  try {
    if (noise) {
      // Natively our response's ephemeral is drawn here, its public key on lanes es leaves idle.
      const generate = prepareEphemeral(w);
      if (noise.noiseConsumeInitiationStatic(w.slab, msg.bytes, local.privateKey.raw, local.responderInitialHash, incomingStatic, generate) !== 1) {
        return 'handshakeDecryptFailed';
      }
    } else {
      hashInto(w.h, local.responderInitialHash, msg.ephemeral);
      kdfInto(w.ck, INITIAL_CHAIN_KEY, msg.ephemeral);
      if (!x25519Into(w.dh, local.privateKey, msg.ephemeral)) return 'handshakeDecryptFailed';
      kdfInto(w.kdf2, w.ck, w.dh);
      if (!aeadOpenInto(incomingStatic, w.t1, ZERO_NONCE, msg.encryptedStatic, w.h)) return 'handshakeDecryptFailed';
      hashInto(w.h, w.h, msg.encryptedStatic);
    }
    const hs = lookup(incomingStatic);
    if (!hs) return 'handshakeForUnknownKey';
    // Usually the precomputed one; during a static key rotation (ours retiring, or the peer's next
    // key) the caller computes DH for the pair of keys this initiation really uses.
    const staticStatic = staticStaticOf(hs, incomingStatic);
    if (!staticStatic) return 'handshakeDecryptFailed';
    if (noise) {
      if (noise.noiseConsumeInitiationTimestamp(w.slab, msg.bytes, staticStatic, incomingTimestamp) !== 1) return 'handshakeDecryptFailed';
    } else {
      kdfInto(w.kdf2, w.ck, staticStatic);
      if (!aeadOpenInto(incomingTimestamp, w.t1, ZERO_NONCE, msg.encryptedTimestamp, w.h)) return 'handshakeDecryptFailed';
      hashInto(w.h, w.h, msg.encryptedTimestamp);
    }
    if (!tai64nAfter(incomingTimestamp, hs.lastTimestamp)) return 'staleTimestamp';
    if (hs.lastInitiationConsumption !== null && now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE) return 'handshakeFlood';
    const mine = hs.begin();
    copyWork(mine, w, Work.H, Work.T1); // h, ck
    mine.remoteEphemeral.set(msg.ephemeral);
    copyWork(mine, w, Work.EPHEMERAL, Work.END); // our ephemeral pair (zero on the primitives, which draw it in createResponse)
    hs.remoteIndex = msg.sender;
    hs.lastTimestamp.set(incomingTimestamp);
    hs.lastInitiationConsumption = now;
    hs.state = HandshakeState.InitiationConsumed;
    return hs;
  } finally {
    zeroize(w.slab, incomingStatic);
  }
}

/** Step 3 (responder): the serialized response (macs zero), after consumeInitiation. */
export function createResponse(hs: Handshake, senderIndex: number): Uint8Array | null {
  const w = hs.work;
  if (hs.state !== HandshakeState.InitiationConsumed || !w) return null;
  const { bytes: msg, fields } = newResponse(senderIndex, hs.remoteIndex);
  if (noise ? noise.noiseCreateResponse(w.slab, msg, hs.remoteStatic, hs.presharedKey) !== 1 : !responseOnPrimitives(hs, w, fields)) {
    return null;
  }
  hs.localIndex = senderIndex;
  hs.state = HandshakeState.ResponseCreated;
  return msg;
}

function responseOnPrimitives(hs: Handshake, w: HandshakeWork, fields: ResponseMessage): boolean {
  prepareEphemeral(w);
  const eph = ephemeralKey(w);
  fields.ephemeral.set(w.ephemeralPublic);
  hashInto(w.h, w.h, w.ephemeralPublic);
  mixKey(w, w.ephemeralPublic);
  try {
    if (!x25519Into(w.dh, eph, w.remoteEphemeral)) return false;
    mixKey(w, w.dh);
    if (!x25519Into(w.dh, eph, hs.remoteStatic)) return false;
    mixKey(w, w.dh);
    kdfInto(w.kdf3, w.ck, hs.presharedKey); // ck || tau || key
    hashInto(w.h, w.h, w.t1);
    const encryptedNothing = aeadSealInto(fields.encryptedNothing, w.t2, ZERO_NONCE, EMPTY, w.h);
    hashInto(w.h, w.h, encryptedNothing);
    return true;
  } finally {
    zeroize(w.t1, w.t2, w.dh, w.remoteEphemeral);
    eph.zero();
  }
}

/** Step 4 (initiator): authenticates a response to our pending initiation. */
export function consumeResponse(local: StaticIdentity, hs: Handshake, msg: ResponseMessage): DropReason | null {
  const w = hs.work;
  if (hs.state !== HandshakeState.InitiationCreated || !w) return 'unexpectedResponse';
  if (noise) {
    if (noise.noiseConsumeResponse(w.slab, msg.bytes, local.privateKey.raw, hs.presharedKey) !== 1) return 'handshakeDecryptFailed';
    hs.remoteIndex = msg.sender;
    hs.state = HandshakeState.ResponseConsumed;
    return null;
  }
  // Work on a copy: a forged response must leave the pending handshake intact.
  const trial = incoming;
  const eph = ephemeralKey(w);
  try {
    trial.slab.set(w.slab);
    hashInto(trial.h, trial.h, msg.ephemeral);
    kdfInto(trial.ck, trial.ck, msg.ephemeral);
    if (!x25519Into(trial.dh, eph, msg.ephemeral)) return 'handshakeDecryptFailed';
    kdfInto(trial.ck, trial.ck, trial.dh);
    if (!x25519Into(trial.dh, local.privateKey, msg.ephemeral)) return 'handshakeDecryptFailed';
    kdfInto(trial.ck, trial.ck, trial.dh);
    kdfInto(trial.kdf3, trial.ck, hs.presharedKey);
    hashInto(trial.h, trial.h, trial.t1);
    if (!aeadOpenInto(EMPTY, trial.t2, ZERO_NONCE, msg.encryptedNothing, trial.h)) return 'handshakeDecryptFailed';
    hashInto(trial.h, trial.h, msg.encryptedNothing);
    w.h.set(trial.h);
    w.ck.set(trial.ck);
  } finally {
    zeroize(trial.slab);
    eph.zero();
  }
  hs.remoteIndex = msg.sender;
  hs.state = HandshakeState.ResponseConsumed;
  return null;
}

export interface SessionKeys {
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  isInitiator: boolean;
  localIndex: number;
  remoteIndex: number;
}

/**
 * Derives the transport keys after a completed exchange (initiator after step 4, responder after
 * step 3) and zeroes the handshake secrets. Null in any other state.
 */
export function deriveSessionKeys(hs: Handshake): SessionKeys | null {
  let isInitiator: boolean;
  if (hs.state === HandshakeState.ResponseConsumed) isInitiator = true;
  else if (hs.state === HandshakeState.ResponseCreated) isInitiator = false;
  else return null;
  // Its own ArrayBuffer: a 64-byte typed array would start on V8's heap and be copied out of it for the KDF.
  const both = kdfInto(new Uint8Array(new ArrayBuffer(64)), hs.work!.ck, EMPTY);
  const t1 = both.subarray(0, 32);
  const t2 = both.subarray(32, 64);
  const keys: SessionKeys = {
    sendKey: isInitiator ? t1 : t2,
    receiveKey: isInitiator ? t2 : t1,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return keys;
}
