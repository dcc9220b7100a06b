// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (paper §5.4.2–5.4.4): the per-peer
// handshake state and the four steps (create/consume initiation, create/consume response), then
// the derivation of the transport keys. Pure: bytes and a clock in, bytes and state out.
import type { KeyObject } from 'node:crypto';
import {
  X25519PrivateKey, generatePrivateKey, publicKeyObject, x25519, hash, kdf, aeadSeal, aeadOpen,
  zeroize, AEAD_NONCE_SIZE,
} from '../crypto/index.js';
import { HANDSHAKE_INITIATION_RATE, NOISE_CONSTRUCTION, WG_IDENTIFIER } from './constants.js';
import {
  serializeInitiation, serializeResponse, type InitiationMessage, type ResponseMessage,
} from './messages.js';
import { TAI64N_SIZE, tai64nAfter } from './tai64n.js';
import type { DropReason } from './stats.js';

const enc = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
export const INITIAL_CHAIN_KEY = hash(enc(NOISE_CONSTRUCTION));
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, enc(WG_IDENTIFIER));
const ZERO_NONCE = new Uint8Array(AEAD_NONCE_SIZE);
const EMPTY = new Uint8Array(0);
const MAC_SPACE = new Uint8Array(16);

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

  constructor(privateKey: Uint8Array | X25519PrivateKey) {
    this.privateKey = privateKey instanceof X25519PrivateKey ? privateKey : new X25519PrivateKey(privateKey);
    this.publicKey = this.privateKey.publicKey;
  }
}

/** Handshake state with one peer (wireguard-go's Handshake). */
export class Handshake {
  state = HandshakeState.Zeroed;
  hash: Uint8Array = new Uint8Array(32);
  chainKey: Uint8Array = new Uint8Array(32);
  localEphemeral: X25519PrivateKey | null = null;
  remoteEphemeral: Uint8Array = new Uint8Array(32);
  /** The remote ephemeral as an OpenSSL key, imported once for the responder's two DHs. */
  remoteEphemeralObject: KeyObject | null = null;
  /** Our index for this handshake (0 = none). */
  localIndex = 0;
  /** The peer's index: the receiver field of what we send. */
  remoteIndex = 0;
  readonly remoteStatic: Uint8Array;
  readonly remoteStaticObject: KeyObject | null;
  presharedKey: Uint8Array;
  /** DH(our static, peer static), computed once; null when the peer key is unusable. */
  readonly precomputedStaticStatic: Uint8Array | null;
  /** Latest TAI64N accepted from the peer: initiations not newer than this are replays. */
  lastTimestamp: Uint8Array = new Uint8Array(TAI64N_SIZE);
  lastInitiationConsumption = Number.NEGATIVE_INFINITY;
  lastSentHandshake = Number.NEGATIVE_INFINITY;

  constructor(local: StaticIdentity, remoteStatic: Uint8Array, presharedKey?: Uint8Array) {
    this.remoteStatic = Uint8Array.from(remoteStatic);
    this.remoteStaticObject = publicKeyObject(this.remoteStatic);
    this.presharedKey = presharedKey ? Uint8Array.from(presharedKey) : new Uint8Array(32);
    this.precomputedStaticStatic = this.remoteStaticObject ? x25519(local.privateKey, this.remoteStaticObject) : null;
  }

  /** Forgets the in-flight handshake (keeps the replay/flood memory). */
  clear(): void {
    this.localEphemeral?.zero();
    this.localEphemeral = null;
    zeroize(this.remoteEphemeral, this.chainKey, this.hash);
    this.remoteEphemeralObject = null;
    this.localIndex = 0;
    this.state = HandshakeState.Zeroed;
  }
}

function mixHash(h: Uint8Array, data: Uint8Array): Uint8Array {
  return hash(h, data);
}

function mixKey(ck: Uint8Array, data: Uint8Array): Uint8Array {
  return kdf(1, ck, data)[0]!;
}

/** Step 1 (initiator): a serialized initiation with mac1/mac2 left zero for the cookie layer. */
export function createInitiation(local: StaticIdentity, hs: Handshake, senderIndex: number, timestamp: Uint8Array): Uint8Array | null {
  if (!hs.precomputedStaticStatic || !hs.remoteStaticObject) return null;
  hs.clear();
  let h = mixHash(INITIAL_HASH, hs.remoteStatic);
  let ck = INITIAL_CHAIN_KEY;
  const eph = generatePrivateKey();
  ck = mixKey(ck, eph.publicKey);
  h = mixHash(h, eph.publicKey);
  const es = x25519(eph, hs.remoteStaticObject);
  if (!es) return null;
  let [ck2, key] = kdf(2, ck, es);
  zeroize(es);
  const encryptedStatic = aeadSeal(key!, ZERO_NONCE, local.publicKey, h);
  h = mixHash(h, encryptedStatic);
  zeroize(key);
  [ck2, key] = kdf(2, ck2!, hs.precomputedStaticStatic);
  const encryptedTimestamp = aeadSeal(key!, ZERO_NONCE, timestamp, h);
  h = mixHash(h, encryptedTimestamp);
  zeroize(key);
  hs.hash = h;
  hs.chainKey = ck2!;
  hs.localEphemeral = eph;
  hs.localIndex = senderIndex;
  hs.state = HandshakeState.InitiationCreated;
  return serializeInitiation({
    sender: senderIndex, ephemeral: eph.publicKey, encryptedStatic, encryptedTimestamp, mac1: MAC_SPACE, mac2: MAC_SPACE,
  });
}

/**
 * Step 2 (responder): decrypts an initiation, finds the peer by its static key (lookup), checks
 * the timestamp against replay and the flood rate, and stores the state in that peer's Handshake.
 * Returns that Handshake, or why the message was dropped.
 */
export function consumeInitiation(
  local: StaticIdentity, msg: InitiationMessage, lookup: (remoteStatic: Uint8Array) => Handshake | undefined, now: number,
): Handshake | DropReason {
  let h = mixHash(INITIAL_HASH, local.publicKey);
  h = mixHash(h, msg.ephemeral);
  const ck = mixKey(INITIAL_CHAIN_KEY, msg.ephemeral);
  const ephemeralObject = publicKeyObject(msg.ephemeral);
  const es = ephemeralObject ? x25519(local.privateKey, ephemeralObject) : null;
  if (!es) return 'handshakeDecryptFailed';
  let [ck2, key] = kdf(2, ck, es);
  zeroize(es);
  const remoteStatic = aeadOpen(key!, ZERO_NONCE, msg.encryptedStatic, h);
  zeroize(key);
  if (!remoteStatic) return 'handshakeDecryptFailed';
  h = mixHash(h, msg.encryptedStatic);
  const hs = lookup(remoteStatic);
  if (!hs) return 'handshakeForUnknownKey';
  if (!hs.precomputedStaticStatic) return 'handshakeDecryptFailed';
  [ck2, key] = kdf(2, ck2!, hs.precomputedStaticStatic);
  const timestamp = aeadOpen(key!, ZERO_NONCE, msg.encryptedTimestamp, h);
  zeroize(key);
  if (!timestamp) return 'handshakeDecryptFailed';
  h = mixHash(h, msg.encryptedTimestamp);
  if (!tai64nAfter(timestamp, hs.lastTimestamp)) return 'staleTimestamp';
  if (now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE) return 'handshakeFlood';
  hs.clear();
  hs.hash = h;
  hs.chainKey = ck2!;
  hs.remoteIndex = msg.sender;
  hs.remoteEphemeral = Uint8Array.from(msg.ephemeral);
  hs.remoteEphemeralObject = ephemeralObject;
  hs.lastTimestamp = timestamp;
  hs.lastInitiationConsumption = now;
  hs.state = HandshakeState.InitiationConsumed;
  zeroize(ck);
  return hs;
}

/** Step 3 (responder): the serialized response (macs zero), after consumeInitiation. */
export function createResponse(hs: Handshake, senderIndex: number): Uint8Array | null {
  if (hs.state !== HandshakeState.InitiationConsumed) return null;
  const eph = generatePrivateKey();
  let h = mixHash(hs.hash, eph.publicKey);
  let ck = mixKey(hs.chainKey, eph.publicKey);
  const ee = x25519(eph, hs.remoteEphemeralObject ?? hs.remoteEphemeral);
  const se = hs.remoteStaticObject ? x25519(eph, hs.remoteStaticObject) : null;
  if (!ee || !se) return null;
  ck = mixKey(ck, ee);
  ck = mixKey(ck, se);
  zeroize(ee, se);
  const [ck2, tau, key] = kdf(3, ck, hs.presharedKey);
  h = mixHash(h, tau!);
  const encryptedNothing = aeadSeal(key!, ZERO_NONCE, EMPTY, h);
  h = mixHash(h, encryptedNothing);
  zeroize(tau, key, ck);
  hs.hash = h;
  hs.chainKey = ck2!;
  hs.localEphemeral = eph;
  hs.localIndex = senderIndex;
  hs.state = HandshakeState.ResponseCreated;
  return serializeResponse({
    sender: senderIndex, receiver: hs.remoteIndex, ephemeral: eph.publicKey, encryptedNothing, mac1: MAC_SPACE, mac2: MAC_SPACE,
  });
}

/** Step 4 (initiator): authenticates a response to our pending initiation. */
export function consumeResponse(local: StaticIdentity, hs: Handshake, msg: ResponseMessage): DropReason | null {
  if (hs.state !== HandshakeState.InitiationCreated || !hs.localEphemeral) return 'unexpectedResponse';
  let h = mixHash(hs.hash, msg.ephemeral);
  let ck = mixKey(hs.chainKey, msg.ephemeral);
  const ephemeralObject = publicKeyObject(msg.ephemeral);
  if (!ephemeralObject) return 'handshakeDecryptFailed';
  const ee = x25519(hs.localEphemeral, ephemeralObject);
  const se = x25519(local.privateKey, ephemeralObject);
  if (!ee || !se) return 'handshakeDecryptFailed';
  ck = mixKey(ck, ee);
  ck = mixKey(ck, se);
  zeroize(ee, se);
  const [ck2, tau, key] = kdf(3, ck, hs.presharedKey);
  h = mixHash(h, tau!);
  const ok = aeadOpen(key!, ZERO_NONCE, msg.encryptedNothing, h);
  zeroize(tau, key, ck);
  if (!ok) return 'handshakeDecryptFailed';
  hs.hash = mixHash(h, msg.encryptedNothing);
  hs.chainKey = ck2!;
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
  const [t1, t2] = kdf(2, hs.chainKey, EMPTY);
  const keys: SessionKeys = {
    sendKey: isInitiator ? t1! : t2!,
    receiveKey: isInitiator ? t2! : t1!,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return keys;
}
