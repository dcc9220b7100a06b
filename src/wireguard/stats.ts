// Why a datagram was dropped, and the per-device counters. Hostile input is counted, never thrown.

export const DROP_REASONS = [
  'badLength',            // datagram shorter/longer than its message type allows
  'badType',              // unknown message type or non-zero reserved bytes
  'mac1Invalid',          // handshake message whose mac1 does not verify
  'mac2Required',         // under load and no valid mac2: answered with a cookie reply
  'handshakeRateLimited', // under load, unprocessed: its source is over its rate, or the cookie-reply budget is spent
  'unknownReceiverIndex', // response, cookie reply or data for an index we do not hold
  'handshakeDecryptFailed', // initiation/response that fails to decrypt (wrong key, forged)
  'handshakeForUnknownKey', // initiation from a static key that is not a configured peer
  'staleTimestamp',       // initiation whose TAI64N is not newer than the last accepted (replay)
  'handshakeFlood',       // initiations from one peer faster than HANDSHAKE_INITIATION_RATE
  'unexpectedResponse',   // response when no initiation of ours is pending for that index
  'cookieDecryptFailed',  // cookie reply that does not decrypt against our last mac1
  'replay',               // data counter already seen or older than the window
  'decryptFailed',        // data that does not authenticate
  'keypairExpired',       // data on a keypair older than REJECT_AFTER_TIME or past its counters
  'invalidInnerPacket',   // decrypted data that is not an IPv4/IPv6 packet of consistent length
  'noEndpoint',           // a packet for a peer whose endpoint is not known yet
  'stagedQueueFull',      // a packet dropped because MAX_STAGED_PACKETS were already waiting
  'handshakeGaveUp',      // packets discarded after REKEY_ATTEMPT_TIME without a handshake
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export class DeviceStats {
  readonly drops: Record<DropReason, number>;
  handshakeInitiationsSent = 0;
  handshakeResponsesSent = 0;
  handshakesCompleted = 0;
  cookieRepliesSent = 0;
  cookieRepliesReceived = 0;
  dataPacketsReceived = 0;
  dataPacketsSent = 0;
  keepalivesSent = 0;
  keepalivesReceived = 0;

  constructor() {
    this.drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  }

  drop(reason: DropReason): void {
    this.drops[reason]++;
  }

  /** Sum of all drops. */
  totalDrops(): number {
    let n = 0;
    for (const r of DROP_REASONS) n += this.drops[r];
    return n;
  }
}
