// A session keypair (wireguard-go's Keypair): the two transport keys of one completed handshake,
// the indexes that name it on the wire, the send counter and the receive replay window.
// The raw keys are exposed on purpose: the datapath hands them to a native batch AEAD (and frees
// its contexts through onZero); TypeScript keeps every protocol decision.
import { zeroize } from '../crypto/index.js';
import { REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME } from './constants.js';
import { ReplayWindow } from './replay-window.js';
import type { Peer } from './peer.js';

export class Keypair {
  /**
   * Both keys in one 64-byte array (the KDF's output as it came: one view, not two, ~90 B a
   * keypair), the send key at sendAt. Zeroed when the keypair dies.
   */
  private readonly keys: Uint8Array;
  private readonly sendAt: number;
  /** Our index: the receiver field of data the peer sends us. */
  readonly localIndex: number;
  /** The peer's index: the receiver field of data we send. */
  readonly remoteIndex: number;
  /** Device-clock milliseconds when the keys were derived. */
  readonly createdAt: number;
  /** True if we initiated this handshake (only the initiator rekeys on REKEY_AFTER_TIME). */
  readonly isInitiator: boolean;
  /** Receive-side replay window (Device.transportKeypair() and acceptTransport() consult it). */
  readonly replay = new ReplayWindow(REJECT_AFTER_MESSAGES);
  readonly peer: Peer;
  /** Next send counter (nonce) to use. */
  sendCounter = 0;
  /** Called once when the keypair is destroyed (e.g. to free a native context). */
  onZero: ((kp: Keypair) => void) | null = null;
  private alive = true;

  /**
   * The key arrays given become the keypair's: the two halves of one 64-byte buffer are kept as
   * they are (deriveSessionKeys' output), any other two are copied into one and zeroed.
   */
  constructor(init: {
    sendKey: Uint8Array; receiveKey: Uint8Array; localIndex: number; remoteIndex: number;
    isInitiator: boolean; createdAt: number; peer: Peer;
  }) {
    const { sendKey, receiveKey } = init;
    const buffer = sendKey.buffer;
    if (buffer === receiveKey.buffer && buffer.byteLength === 64 && sendKey.length === 32 && receiveKey.length === 32
      && sendKey.byteOffset + receiveKey.byteOffset === 32) {
      this.keys = new Uint8Array(buffer);
      this.sendAt = sendKey.byteOffset;
    } else {
      this.keys = new Uint8Array(64);
      this.keys.set(sendKey, 0);
      this.keys.set(receiveKey, 32);
      this.sendAt = 0;
      zeroize(sendKey, receiveKey);
    }
    this.localIndex = init.localIndex;
    this.remoteIndex = init.remoteIndex;
    this.isInitiator = init.isInitiator;
    this.createdAt = init.createdAt;
    this.peer = init.peer;
  }

  /** ChaCha20-Poly1305 key for what we send (32 bytes): a view made on each call (a context's making, a lone packet's seal). */
  get sendKey(): Uint8Array {
    return this.keys.subarray(this.sendAt, this.sendAt + 32);
  }

  /** ChaCha20-Poly1305 key for what we receive (32 bytes), a view as sendKey. */
  get receiveKey(): Uint8Array {
    return this.keys.subarray(32 - this.sendAt, 64 - this.sendAt);
  }

  get isAlive(): boolean {
    return this.alive;
  }

  /** True if we may still encrypt with it: younger than REJECT_AFTER_TIME, counters left. */
  canSend(now: number): boolean {
    return this.alive && now - this.createdAt < REJECT_AFTER_TIME && this.sendCounter < REJECT_AFTER_MESSAGES;
  }

  /** True if data under it may still be accepted (younger than REJECT_AFTER_TIME). */
  canReceive(now: number): boolean {
    return this.alive && now - this.createdAt < REJECT_AFTER_TIME;
  }

  /**
   * Reserves `count` consecutive send counters and returns the first, or -1 when that would pass
   * REJECT_AFTER_MESSAGES (then a new handshake is needed). frameTransport() takes one per packet.
   */
  reserveSendCounters(count = 1): number {
    const first = this.sendCounter;
    if (!this.alive || first + count > REJECT_AFTER_MESSAGES) return -1;
    this.sendCounter = first + count;
    return first;
  }

  /** Overwrites the keys; the keypair can no longer send or receive. */
  zero(): void {
    if (!this.alive) return;
    this.alive = false;
    zeroize(this.keys);
    const cb = this.onZero;
    this.onZero = null;
    cb?.(this);
  }
}
