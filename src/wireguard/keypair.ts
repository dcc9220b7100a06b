// A session keypair (wireguard-go's Keypair): the two transport keys of one completed handshake,
// the indexes that name it on the wire, the send counter and the receive replay window.
// The raw keys are exposed on purpose: the datapath hands them to a native batch AEAD (and frees
// its contexts through IndexTable.onKeypairErased); TypeScript keeps every protocol decision.
import { zeroize } from '../crypto/index.js';
import { REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME } from './constants.js';
import { ReplayWindow } from './replay-window.js';
import type { Peer } from './peer.js';
import { SlotAllocator } from './slot-allocator.js';

/** Bytes of a keypair's slot (Device.keySlots): the send key, then the receive key. */
export const KEYPAIR_SLOT_SIZE = 64;

/** What a dead keypair's keys read as (they were zeroed; its slot may hold another's now). */
const DEAD_KEY = new Uint8Array(32);

/**
 * The receive replay window is the keypair's own fields (`replay` is the keypair itself), as
 * wireguard-go's Keypair embeds its replay filter: an object of its own was 32 B more a keypair
 * (its header and the field naming it), and a live peer holds two.
 */
export class Keypair extends ReplayWindow {
  /**
   * Both keys in a slot of the device's shared chunks (an ArrayBuffer and view of its own were
   * ~240 B of heap and a backing store's malloc a keypair, and a live peer holds one to three),
   * send key first, at `at`. The slot is zeroed and freed when the keypair dies.
   */
  private readonly chunk: Uint8Array;
  private readonly at: number;
  /** Our index: the receiver field of data the peer sends us. */
  readonly localIndex: number;
  /** The peer's index: the receiver field of data we send. */
  readonly remoteIndex: number;
  /** Device-clock milliseconds when the keys were derived. */
  readonly createdAt: number;
  /** True if we initiated this handshake (only the initiator rekeys on REKEY_AFTER_TIME). */
  readonly isInitiator: boolean;
  readonly peer: Peer;
  /** Next send counter (nonce) to use. */
  sendCounter = 0;
  /** Its row of native contexts in the engine's AeadContexts (AeadOwner; -1: none): no map entry a context. */
  aeadRow = -1;
  /** False once zeroed: a keypair dies once (IndexTable.eraseKeypair, or a restore refused). */
  private alive = true;

  /** The key arrays given are copied into a slot of `slots` (KEYPAIR_SLOT_SIZE) and zeroed. */
  constructor(init: {
    sendKey: Uint8Array; receiveKey: Uint8Array; localIndex: number; remoteIndex: number;
    isInitiator: boolean; createdAt: number; peer: Peer; slots: SlotAllocator;
  }) {
    super();
    const { sendKey, receiveKey } = init;
    const { chunk, offset } = init.slots.alloc();
    chunk.set(sendKey, offset);
    chunk.set(receiveKey, offset + 32);
    zeroize(sendKey, receiveKey);
    this.chunk = chunk;
    this.at = offset;
    this.localIndex = init.localIndex;
    this.remoteIndex = init.remoteIndex;
    this.isInitiator = init.isInitiator;
    this.createdAt = init.createdAt;
    this.peer = init.peer;
  }

  /**
   * ChaCha20-Poly1305 key for what we send (32 bytes): a view made on each call (a context's
   * making, a lone packet's seal); all zero once the keypair is dead.
   */
  get sendKey(): Uint8Array {
    return this.alive ? this.chunk.subarray(this.at, this.at + 32) : DEAD_KEY;
  }

  /** ChaCha20-Poly1305 key for what we receive (32 bytes), a view as sendKey. */
  get receiveKey(): Uint8Array {
    return this.alive ? this.chunk.subarray(this.at + 32, this.at + 64) : DEAD_KEY;
  }

  /** Receive-side replay window (Device.transportKeypair() and acceptTransport() consult it): the keypair's own. */
  get replay(): ReplayWindow {
    return this;
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

  /**
   * Overwrites the keys and gives their slot back to `slots` (the allocator it was made from: the
   * device's, not kept in every keypair); it can no longer send or receive. False when it was dead already.
   */
  zero(slots: SlotAllocator): boolean {
    if (!this.alive) return false;
    this.alive = false;
    slots.release({ chunk: this.chunk, offset: this.at }); // zeroes it
    return true;
  }
}
