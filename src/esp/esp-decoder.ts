// ESP tunnel-mode decapsulation (RFC 4303) for an inbound SA: length checks, ESN inference and replay
// check, ICV verification, decryption, trailer check. Hostile bytes never throw: every failure is a
// drop reason, counted. espSequence() (before any crypto) and acceptEsp() (after it) make every
// acceptance decision, allocation-free, for decodeEsp() here and for the batch engine alike.
import { createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { countSaUse, type InboundSa } from './security-association.js';
import { cipherName, ivLength, paddingBlock } from './esp-transform.js';
import {
  ESP_HEADER_LENGTH, GCM_NONCE_AAD_LENGTH, checkEspPayload, espEncryptedLength, esnHighBytes, readEspSeqLow, readEspSpi,
  writeGcmNonceAad,
} from './esp-packet.js';

export const ESP_DROP_REASONS = [
  'truncated', 'bad-length', 'no-state', 'replay', 'auth-failed', 'bad-padding', 'bad-next-header', 'ike', 'keepalive',
] as const;
export type EspDropReason = (typeof ESP_DROP_REASONS)[number];
export type EspDropCounters = Record<EspDropReason, number>;

/** Drop reasons by the /proc/net/xfrm_stat counter Linux would bump, for `encrypt status`; keepalives are no error. */
export const XFRM_STAT_NAMES: Record<EspDropReason, string | undefined> = {
  'truncated': 'XfrmInHdrError',
  'bad-length': 'XfrmInHdrError',
  'no-state': 'XfrmInNoStates',
  'replay': 'XfrmInStateSeqError',
  'auth-failed': 'XfrmInStateProtoError',
  'bad-padding': 'XfrmInStateProtoError',
  'bad-next-header': 'XfrmInStateProtoError',
  'ike': 'XfrmInNoStates',
  'keepalive': undefined,
};

export function newDropCounters(): EspDropCounters {
  return Object.fromEntries(ESP_DROP_REASONS.map((r) => [r, 0])) as EspDropCounters;
}

export type EspDecodeResult =
  | { ok: true; seq: number; nextHeader: number; inner: Uint8Array }
  | { ok: false; reason: EspDropReason };

const nonceAad = new Uint8Array(GCM_NONCE_AAD_LENGTH);
const esnHigh = new Uint8Array(4);

/**
 * Receiving ESP, before any crypto: the packet at buf[off..off+len) (from the SPI), for `sa`, the
 * SA its sender and SPI name (undefined: none), must hold whole cipher blocks and a sequence
 * number the replay window may still accept. Returns that full (ESN) sequence number, or why the
 * packet is dropped (counted in `drops`).
 */
export function espSequence(sa: InboundSa | undefined, buf: Uint8Array, off: number, len: number, drops: EspDropCounters): number | EspDropReason {
  let reason: EspDropReason | null = null;
  let seq = -1;
  if (len < ESP_HEADER_LENGTH) reason = 'truncated';
  else if (!sa || readEspSpi(buf, off) !== sa.spi) reason = 'no-state';
  else {
    const block = paddingBlock(sa.transform);
    const encrypted = espEncryptedLength(sa.transform, len);
    if (encrypted < block) reason = 'truncated';
    else if (encrypted % block !== 0) reason = 'bad-length';
    else {
      seq = sa.replay.infer(readEspSeqLow(buf, off));
      if (seq < 0 || !sa.replay.check(seq)) reason = 'replay';
    }
  }
  if (reason === null) return seq;
  drops[reason]++;
  return reason;
}

/**
 * Receiving ESP, after the ICV check (`authentic`) and decryption into buf[off..off+len) (inner
 * packet and trailer): the inner packet's length when the packet is accepted (the replay window
 * records `seq`, the SA counts it), or why it is dropped (counted): a failed ICV, a bad trailer, an
 * inner packet that is not what the next header says, or a copy of `seq` accepted since
 * espSequence() (e.g. earlier in the same batch).
 */
export function acceptEsp(
  sa: InboundSa, seq: number, authentic: boolean, buf: Uint8Array, off: number, len: number, nowMs: number, drops: EspDropCounters,
): number | EspDropReason {
  // RFC 4303 A2.2 reads a number below the window as the next 2^32 block; if its ICV then fails, it
  // was almost surely an old packet (a genuine jump of ~2^32 is implausible): count it as a replay.
  const payload = !authentic ? (seq - sa.replay.top > 2 ** 31 ? 'replay' : 'auth-failed') : checkEspPayload(buf, off, len);
  const accepted = typeof payload === 'number' && sa.replay.accept(seq);
  if (!accepted) {
    const reason = typeof payload === 'number' ? 'replay' : payload;
    drops[reason]++;
    return reason;
  }
  countSaUse(sa, payload, nowMs);
  return payload;
}

/** A packet espSequence() passed, opened: its sequence number and plaintext (inner packet and trailer), or null if its ICV failed. */
export type OpenedEsp = { seq: number; plain: Uint8Array | null };

/**
 * Opens an ESP packet (starting at the SPI) for `sa`, the SA the caller found for its source and
 * SPI (undefined = no state): the sequence number it may be accepted as and its plaintext, or why it
 * is dropped before any crypto (counted). Nothing is recorded: acceptEsp() decides.
 */
export function openEsp(sa: InboundSa | undefined, packet: Uint8Array, drops: EspDropCounters): OpenedEsp | EspDropReason {
  const seq = espSequence(sa, packet, 0, packet.length, drops);
  if (typeof seq === 'string') return seq;
  const t = sa!.transform;
  const ivEnd = ESP_HEADER_LENGTH + ivLength(t);
  const encryptedLength = espEncryptedLength(t, packet.length);
  const encrypted = packet.subarray(ivEnd, ivEnd + encryptedLength);
  const icv = packet.subarray(ivEnd + encryptedLength);
  let plain: Uint8Array | null = null;
  try {
    if (t.kind === 'aead') {
      writeGcmNonceAad(nonceAad, 0, t.material, t.saltAt, packet, ESP_HEADER_LENGTH, sa!.spi, seq);
      const d = createDecipheriv(cipherName(t) as 'aes-128-gcm', t.key, nonceAad.subarray(0, 12), { authTagLength: t.icvLength });
      d.setAAD(nonceAad.subarray(12));
      d.setAuthTag(icv);
      plain = Buffer.concat([d.update(encrypted), d.final()]);
    } else {
      const mac = createHmac(t.auth === 'hmac(sha256)' ? 'sha256' : 'sha512', t.authKey);
      mac.update(packet.subarray(0, ivEnd + encryptedLength));
      mac.update(esnHighBytes(seq, esnHigh));
      if (timingSafeEqual(mac.digest().subarray(0, t.icvLength), icv)) {
        const d = createDecipheriv(cipherName(t), t.encKey, packet.subarray(ESP_HEADER_LENGTH, ivEnd));
        d.setAutoPadding(false);
        plain = Buffer.concat([d.update(encrypted), d.final()]);
      }
    }
  } catch {
    plain = null;
  }
  return { seq, plain };
}

/** openEsp() then acceptEsp(): on success the replay window and counters advance. */
export function decodeEsp(sa: InboundSa | undefined, packet: Uint8Array, nowMs: number, drops: EspDropCounters): EspDecodeResult {
  const opened = openEsp(sa, packet, drops);
  if (typeof opened === 'string') return { ok: false, reason: opened };
  return acceptOpenedEsp(sa!, opened, packet, nowMs, drops);
}

/** acceptEsp() for a packet openEsp() opened. */
export function acceptOpenedEsp(sa: InboundSa, opened: OpenedEsp, packet: Uint8Array, nowMs: number, drops: EspDropCounters): EspDecodeResult {
  const { seq, plain } = opened;
  const length = plain ? plain.length : 0;
  const payload = acceptEsp(sa, seq, plain !== null, plain ?? packet, 0, length, nowMs, drops);
  if (typeof payload === 'string') return { ok: false, reason: payload };
  return { ok: true, seq, nextHeader: plain![length - 1]!, inner: plain!.subarray(0, payload) };
}
