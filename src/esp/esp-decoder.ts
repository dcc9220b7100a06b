// ESP tunnel-mode decapsulation (RFC 4303) for an inbound SA: length checks, ESN inference and replay
// check, ICV verification, decryption, trailer check. Hostile bytes never throw: every failure is a
// drop reason, counted.
import { createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import type { InboundSa } from './security-association.js';
import { cipherName, ivLength, paddingBlock } from './esp-transform.js';
import {
  ESP_HEADER_LENGTH, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, checkEspTrailer, esnHighBytes, gcmAad, gcmNonce,
  readEspSeqLow, readEspSpi,
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

const nonce = new Uint8Array(12);
const aad = new Uint8Array(12);
const esnHigh = new Uint8Array(4);

function drop(drops: EspDropCounters, reason: EspDropReason): EspDecodeResult {
  drops[reason]++;
  return { ok: false, reason };
}

/**
 * Decodes an ESP packet (starting at the SPI) for `sa`, the SA the caller found for its source and
 * SPI (undefined = no state). On success the replay window and counters advance.
 */
export function decodeEsp(sa: InboundSa | undefined, packet: Uint8Array, nowMs: number, drops: EspDropCounters): EspDecodeResult {
  if (packet.length < ESP_HEADER_LENGTH) return drop(drops, 'truncated');
  if (!sa || readEspSpi(packet) !== sa.spi) return drop(drops, 'no-state');
  const t = sa.transform;
  const ivEnd = ESP_HEADER_LENGTH + ivLength(t);
  const block = paddingBlock(t);
  const encryptedLength = packet.length - ivEnd - t.icvLength;
  if (encryptedLength < block) return drop(drops, 'truncated');
  if (encryptedLength % block !== 0) return drop(drops, 'bad-length');
  const seq = sa.replay.infer(readEspSeqLow(packet));
  if (seq < 0 || !sa.replay.check(seq)) return drop(drops, 'replay');

  // RFC 4303 A2.2 reads a number below the window as the next 2^32 block; if its ICV then fails, it
  // was almost surely an old packet (a genuine jump of ~2^32 is implausible): count it as a replay.
  const failure: EspDropReason = seq - sa.replay.top > 2 ** 31 ? 'replay' : 'auth-failed';
  const iv = packet.subarray(ESP_HEADER_LENGTH, ivEnd);
  const encrypted = packet.subarray(ivEnd, ivEnd + encryptedLength);
  const icv = packet.subarray(ivEnd + encryptedLength);
  let plain: Buffer;
  try {
    if (t.kind === 'aead') {
      const d = createDecipheriv(cipherName(t) as 'aes-128-gcm', t.key, gcmNonce(t.salt, iv, nonce), { authTagLength: t.icvLength });
      d.setAAD(gcmAad(sa.spi, seq, true, aad));
      d.setAuthTag(icv);
      plain = Buffer.concat([d.update(encrypted), d.final()]);
    } else {
      const mac = createHmac(t.auth === 'hmac(sha256)' ? 'sha256' : 'sha512', t.authKey);
      mac.update(packet.subarray(0, ivEnd + encryptedLength));
      mac.update(esnHighBytes(seq, esnHigh));
      if (!timingSafeEqual(mac.digest().subarray(0, t.icvLength), icv)) return drop(drops, failure);
      const d = createDecipheriv(cipherName(t), t.encKey, iv);
      d.setAutoPadding(false);
      plain = Buffer.concat([d.update(encrypted), d.final()]);
    }
  } catch {
    return drop(drops, failure);
  }
  const payloadLength = checkEspTrailer(plain);
  if (payloadLength < 0) return drop(drops, 'bad-padding');
  const nextHeader = plain[plain.length - 1]!;
  const version = payloadLength > 0 ? plain[0]! >> 4 : 0;
  if (!((nextHeader === NEXT_HEADER_IPV4 && version === 4) || (nextHeader === NEXT_HEADER_IPV6 && version === 6))) {
    return drop(drops, 'bad-next-header');
  }
  if (!sa.replay.accept(seq)) return drop(drops, 'replay');
  sa.counters.bytes += payloadLength;
  sa.counters.packets++;
  sa.counters.useTimeMs = nowMs;
  return { ok: true, seq, nextHeader, inner: plain.subarray(0, payloadLength) };
}
