// The per-peer timers of the paper (§6) as wireguard-go's timers.go arms them, but sans-I/O:
// each timer is a deadline on the device clock (null = not pending) that Peer.tick() fires.
// The event methods below are called by the protocol at the same points wireguard-go calls
// timersDataSent, timersHandshakeInitiated, etc.
import {
  KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT,
} from './constants.js';

export class PeerTimers {
  /** Resend the initiation if no response arrived (REKEY_TIMEOUT + jitter). */
  retransmitHandshakeAt: number | null = null;
  /** Passive keepalive: data received, nothing sent back for KEEPALIVE_TIMEOUT. */
  sendKeepaliveAt: number | null = null;
  /** Data sent, nothing received for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (+ jitter): new handshake. */
  newHandshakeAt: number | null = null;
  /** No new session for 3 * REJECT_AFTER_TIME: erase all key material. */
  zeroKeyMaterialAt: number | null = null;
  /** Configured persistent keepalive. */
  persistentKeepaliveAt: number | null = null;

  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  /**
   * Called with each deadline a timer is armed at (not for those armed inside Peer.tick, whose
   * caller asks for the earliest after it): the device queues the peer by it (timer-queue.ts).
   */
  protected armed(_at: number): void { /* a PeerTimers of its own has no queue */ }

  /** After an authenticated data packet (not a keepalive) is sent. */
  dataSent(now: number, jitter: number): void {
    if (this.newHandshakeAt === null) this.armed(this.newHandshakeAt = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter);
  }

  /** After an authenticated data packet (not a keepalive) is received. */
  dataReceived(now: number): void {
    if (this.sendKeepaliveAt === null) this.armed(this.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT);
    else this.needAnotherKeepalive = true;
  }

  /** After any authenticated packet (keepalive, data, handshake) is sent. */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepaliveAt = null;
  }

  /** After any authenticated packet is received. */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshakeAt = null;
  }

  /** After a handshake initiation is sent. */
  handshakeInitiated(now: number, jitter: number): void {
    this.armed(this.retransmitHandshakeAt = now + REKEY_TIMEOUT + jitter);
  }

  /** After a response is consumed, or the responder's first data with the new keypair arrives. */
  handshakeComplete(): void {
    this.retransmitHandshakeAt = null;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  /** After new session keys are derived (either side). */
  sessionDerived(now: number): void {
    this.armed(this.zeroKeyMaterialAt = now + 3 * REJECT_AFTER_TIME);
  }

  /** Before any authenticated packet is sent or after one is received. */
  anyAuthenticatedPacketTraversal(now: number, persistentKeepaliveMs: number): void {
    if (persistentKeepaliveMs > 0) this.armed(this.persistentKeepaliveAt = now + persistentKeepaliveMs);
  }

  /** Earliest pending deadline, or null when all are idle (no array: the engine asks for every peer). */
  earliestDeadline(): number | null {
    return earlier(earlier(earlier(earlier(this.retransmitHandshakeAt, this.sendKeepaliveAt), this.newHandshakeAt), this.zeroKeyMaterialAt), this.persistentKeepaliveAt);
  }

  stopAll(): void {
    this.retransmitHandshakeAt = this.sendKeepaliveAt = this.newHandshakeAt = this.zeroKeyMaterialAt = this.persistentKeepaliveAt = null;
  }
}

function earlier(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null || a <= b ? a : b;
}
