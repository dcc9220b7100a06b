// The per-peer timers of the paper (§6) as wireguard-go's timers.go arms them, but sans-I/O:
// each timer is a deadline on the device clock (null = not pending) that Peer.tick() fires.
// The event methods below are called by the protocol at the same points wireguard-go calls
// timersDataSent, timersHandshakeInitiated, etc.
import {
  KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT,
} from './constants.js';

export class PeerTimers {
  /** Resend the initiation if no response arrived (REKEY_TIMEOUT + jitter). */
  retransmitHandshake: number | null = null;
  /** Passive keepalive: data received, nothing sent back for KEEPALIVE_TIMEOUT. */
  sendKeepalive: number | null = null;
  /** Data sent, nothing received for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (+ jitter): new handshake. */
  newHandshake: number | null = null;
  /** No new session for 3 * REJECT_AFTER_TIME: erase all key material. */
  zeroKeyMaterial: number | null = null;
  /** Configured persistent keepalive. */
  persistentKeepalive: number | null = null;

  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  /** After an authenticated data packet (not a keepalive) is sent. */
  dataSent(now: number, jitter: number): void {
    if (this.newHandshake === null) this.newHandshake = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter;
  }

  /** After an authenticated data packet (not a keepalive) is received. */
  dataReceived(now: number): void {
    if (this.sendKeepalive === null) this.sendKeepalive = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  /** After any authenticated packet (keepalive, data, handshake) is sent. */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepalive = null;
  }

  /** After any authenticated packet is received. */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshake = null;
  }

  /** After a handshake initiation is sent. */
  handshakeInitiated(now: number, jitter: number): void {
    this.retransmitHandshake = now + REKEY_TIMEOUT + jitter;
  }

  /** After a response is consumed, or the responder's first data with the new keypair arrives. */
  handshakeComplete(): void {
    this.retransmitHandshake = null;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  /** After new session keys are derived (either side). */
  sessionDerived(now: number): void {
    this.zeroKeyMaterial = now + 3 * REJECT_AFTER_TIME;
  }

  /** Before any authenticated packet is sent or after one is received. */
  anyAuthenticatedPacketTraversal(now: number, persistentKeepaliveMs: number): void {
    if (persistentKeepaliveMs > 0) this.persistentKeepalive = now + persistentKeepaliveMs;
  }

  /** Earliest pending deadline, or null when all are idle (no array: the engine asks for every peer). */
  nextDeadline(): number | null {
    return earlier(earlier(earlier(earlier(this.retransmitHandshake, this.sendKeepalive), this.newHandshake), this.zeroKeyMaterial), this.persistentKeepalive);
  }

  stopAll(): void {
    this.retransmitHandshake = this.sendKeepalive = this.newHandshake = this.zeroKeyMaterial = this.persistentKeepalive = null;
  }
}

function earlier(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null || a <= b ? a : b;
}
