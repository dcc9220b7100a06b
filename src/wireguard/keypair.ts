// A session keypair (wireguard-go's Keypair): the two transport keys of one completed handshake,
// the indexes that name it on the wire, the send counter and the receive replay window.
// The raw keys are exposed on purpose: the datapath hands them to a native batch AEAD (and frees
// its contexts through onZero); TypeScript keeps every protocol decision.
import { zeroize } from '../crypto/index.js';
import { REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME } from './constants.js';
import { ReplayWindow } from './replay-window.js';
import type { Peer } from './peer.js';

export class Keypair {
  /** ChaCha20-Poly1305 key for what we send (32 bytes). Zeroed when the keypair dies. */
  readonly sendKey: Uint8Array;
  /** ChaCha20-Poly1305 key for what we receive (32 bytes). */
  readonly receiveKey: Uint8Array;
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

  constructor(init: {
    sendKey: Uint8Array; receiveKey: Uint8Array; localIndex: number; remoteIndex: number;
    isInitiator: boolean; createdAt: number; peer: Peer;
  }) {
    this.sendKey = init.sendKey;
    this.receiveKey = init.receiveKey;
    this.localIndex = init.localIndex;
    this.remoteIndex = init.remoteIndex;
    this.isInitiator = init.isInitiator;
    this.createdAt = init.createdAt;
    this.peer = init.peer;
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
    zeroize(this.sendKey, this.receiveKey);
    const cb = this.onZero;
    this.onZero = null;
    cb?.(this);
  }
}
