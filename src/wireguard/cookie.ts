// mac1/mac2 and cookie replies (paper §5.3, §5.4.7): denial-of-service mitigation.
// mac1 = MAC(HASH(LABEL_MAC1 || S_pub of the receiver), message up to mac1): always checked, it
// proves the sender knows our public key. Under load, mac2 = MAC(cookie, message up to mac2) must
// also be valid, where the cookie is MAC(secret rotated every COOKIE_REFRESH_TIME, source address);
// a sender without it gets a cookie reply: the cookie XChaCha20-Poly1305-sealed under
// HASH(LABEL_COOKIE || S_pub of the responder) with the rejected message's mac1 as AAD.
import { hash, hashInto, mac128, xaeadSeal, xaeadOpen, randomBytes, constantTimeEqual, zeroize, XAEAD_NONCE_SIZE } from '../crypto/index.js';
import { COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1 } from './constants.js';
import { MAC1_FROM_END, MAC2_FROM_END, serializeCookieReply, type CookieReplyMessage } from './messages.js';

const enc = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const MAC1_LABEL = enc(LABEL_MAC1);
const COOKIE_LABEL = enc(LABEL_COOKIE);

export function mac1Key(publicKey: Uint8Array): Uint8Array {
  return hash(MAC1_LABEL, publicKey);
}

export function cookieKey(publicKey: Uint8Array): Uint8Array {
  return hash(COOKIE_LABEL, publicKey);
}

/**
 * Scratch for the mac1 we expect (public: a MAC of the message under a key derived from our public
 * key). A fresh 16-byte array each check lived on V8's heap and had to be copied out of it for
 * the native MAC: an allocation and a copy per handshake message.
 */
const expectedMac = new Uint8Array(16);

/** Responder side, one per device (keys derive from our own public key). */
export class CookieChecker {
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private secret = randomBytes(32);
  private secretSetAt = Number.NEGATIVE_INFINITY;

  constructor(localPublicKey: Uint8Array) {
    this.mac1Key = mac1Key(localPublicKey);
    this.cookieKey = cookieKey(localPublicKey);
  }

  /** True if the handshake message's mac1 is valid. */
  checkMac1(msg: Uint8Array): boolean {
    const end = msg.length - MAC1_FROM_END;
    const expected = mac128(this.mac1Key, msg.subarray(0, end), expectedMac);
    return constantTimeEqual(expected, msg.subarray(end, end + 16));
  }

  /** True if the message carries a valid mac2 for this source (current secret only). */
  checkMac2(msg: Uint8Array, source: Uint8Array, now: number): boolean {
    if (now - this.secretSetAt > COOKIE_REFRESH_TIME) return false;
    const cookie = mac128(this.secret, source);
    const end = msg.length - MAC2_FROM_END;
    const ok = constantTimeEqual(mac128(cookie, msg.subarray(0, end)), msg.subarray(end));
    zeroize(cookie);
    return ok;
  }

  /** The 64-byte cookie reply to `msg` (whose sender index is `receiver`) from `source`. */
  createReply(msg: Uint8Array, receiver: number, source: Uint8Array, now: number): Uint8Array {
    if (now - this.secretSetAt > COOKIE_REFRESH_TIME) {
      zeroize(this.secret);
      this.secret = randomBytes(32);
      this.secretSetAt = now;
    }
    const cookie = mac128(this.secret, source);
    const nonce = randomBytes(XAEAD_NONCE_SIZE);
    const end = msg.length - MAC1_FROM_END;
    const encryptedCookie = xaeadSeal(this.cookieKey, nonce, cookie, msg.subarray(end, end + 16));
    zeroize(cookie);
    return serializeCookieReply({ receiver, nonce, encryptedCookie });
  }
}

/** Bytes of a peer's cookie state kept in its slab: the mac1 of our last handshake message. */
export const COOKIE_STATE_SIZE = 16;
const macKeyScratch = new Uint8Array(32);

/**
 * Writes mac1 of a serialized handshake message for `remotePublicKey` in place, and keeps a copy in
 * lastMac1 (a cookie reply to the message is sealed with it as AAD).
 */
export function writeMac1(msg: Uint8Array, remotePublicKey: Uint8Array, lastMac1: Uint8Array): void {
  const m1 = msg.length - MAC1_FROM_END;
  lastMac1.set(mac128(hashInto(macKeyScratch, MAC1_LABEL, remotePublicKey), msg.subarray(0, m1), msg.subarray(m1, m1 + 16)));
}

/**
 * Initiator side, one per peer that was sent a cookie (Peer writes mac1 alone until then). Its keys derive from the peer's public key and are recomputed on
 * use (a hash per handshake message) rather than kept: a peer stays small. The last mac1 lives in
 * the caller's slab at `offset`.
 */
export class CookieGenerator {
  private remotePublicKey: Uint8Array;
  private cookie: Uint8Array | null = null;
  /** Read only while a cookie is held (0, not -Infinity: a heap number would box the field in every peer). */
  private cookieSetAt = 0;
  private hasLastMac1 = false;
  private slab: Uint8Array;
  private offset: number;

  /** remotePublicKey is kept by reference; hasLastMac1 when slab at offset holds the mac1 of a message sent already. */
  constructor(remotePublicKey: Uint8Array, slab: Uint8Array = new Uint8Array(COOKIE_STATE_SIZE), offset = 0, hasLastMac1 = false) {
    this.remotePublicKey = remotePublicKey;
    this.slab = slab;
    this.offset = offset;
    this.hasLastMac1 = hasLastMac1;
  }

  /** @internal Moves the state to slab at offset (copied there first by the caller). */
  rehome(slab: Uint8Array, offset: number, remotePublicKey: Uint8Array): void {
    this.slab = slab;
    this.offset = offset;
    this.remotePublicKey = remotePublicKey;
  }

  private get lastMac1(): Uint8Array {
    return this.slab.subarray(this.offset, this.offset + COOKIE_STATE_SIZE);
  }

  /** Writes mac1 and (with a fresh cookie) mac2 into a serialized handshake message, in place. */
  addMacs(msg: Uint8Array, now: number): void {
    writeMac1(msg, this.remotePublicKey, this.lastMac1);
    this.hasLastMac1 = true;
    const m2 = msg.length - MAC2_FROM_END;
    if (this.cookie && now - this.cookieSetAt <= COOKIE_REFRESH_TIME) {
      mac128(this.cookie, msg.subarray(0, m2), msg.subarray(m2, m2 + 16));
    } else {
      msg.fill(0, m2);
    }
  }

  /** Decrypts a cookie reply to our last handshake message and keeps the cookie. */
  consumeReply(reply: CookieReplyMessage, now: number): boolean {
    if (!this.hasLastMac1) return false;
    const cookie = xaeadOpen(hashInto(macKeyScratch, COOKIE_LABEL, this.remotePublicKey), reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (!cookie) return false;
    zeroize(this.cookie);
    this.cookie = cookie;
    this.cookieSetAt = now;
    return true;
  }

  /** True while a cookie is held and fresh (tests, status). */
  hasCookie(now: number): boolean {
    return !!this.cookie && now - this.cookieSetAt <= COOKIE_REFRESH_TIME;
  }
}
