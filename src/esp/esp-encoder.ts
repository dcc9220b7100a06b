// ESP tunnel-mode encapsulation of one inner IP packet (RFC 4303), AES-GCM per RFC 4106 or AES-CBC
// (RFC 3602) with HMAC-SHA-256/512 (RFC 4868), always with extended sequence numbers.
// frameEspGcm() lays an AES-GCM packet out in place, allocation-free: the batch engine seals what
// it framed natively, encodeEsp() here seals the same frame through node:crypto.
import { createCipheriv, createHmac, randomFillSync } from 'node:crypto';
import { countSaUse, type OutboundSa, type SaGcmTransform } from './security-association.js';
import { cipherName, CBC_IV_LENGTH, paddingBlock } from './esp-transform.js';
import {
  ESP_GCM_PREFIX, ESP_HEADER_LENGTH, GCM_NONCE_AAD_LENGTH, esnHighBytes, espPacketLength, espPadLength, nextHeaderFor,
  writeEspHeader, writeEspTrailer, writeGcmIv, writeGcmNonceAad,
} from './esp-packet.js';
import { SEQ_EXHAUSTED, SEQ_NOT_RESERVED } from './sequence-store.js';

export type EspEncodeFailure = 'not-ip' | 'sequence-not-reserved' | 'sequence-exhausted' | 'buffer-too-small';
export type EspEncodeResult = { ok: true; length: number; seq: number } | { ok: false; reason: EspEncodeFailure };

// Scratch space reused across packets (single-threaded).
const trailer = new Uint8Array(2 + 15);
const nonceAad = new Uint8Array(GCM_NONCE_AAD_LENGTH);
const esnHigh = new Uint8Array(4);

/**
 * Frames the inner packet at buf[off..off+len) in place as ESP under an AES-GCM SA with sequence
 * number `seq` (taken from sa.sequence): SPI, sequence and IV (the sequence number) in the
 * ESP_GCM_PREFIX bytes before it, padding, pad length and `nextHeader` after it, and the nonce
 * then the AAD at nonceAadBuf[at..at+24). Returns the length to seal (inner packet and trailer);
 * the ICV follows it. Counts the packet on the SA.
 */
export function frameEspGcm(
  buf: Uint8Array, off: number, len: number, nextHeader: number, sa: OutboundSa, t: SaGcmTransform, seq: number,
  nonceAadBuf: Uint8Array, at: number, nowMs: number,
): number {
  const h = off - ESP_GCM_PREFIX;
  writeEspHeader(buf, h, sa.spi, seq);
  writeGcmIv(buf, h + ESP_HEADER_LENGTH, seq);
  const sealed = len + writeEspTrailer(buf, off + len, espPadLength(len, paddingBlock(t)), nextHeader);
  writeGcmNonceAad(nonceAadBuf, at, t.material, t.saltAt, buf, h + ESP_HEADER_LENGTH, sa.spi, seq);
  countSaUse(sa, len, nowMs);
  return sealed;
}

/**
 * Encrypts `inner` (a whole IPv4 or IPv6 packet) for `sa` into `out` (at least
 * espPacketLength(sa.transform, inner.length) bytes); returns the ESP packet length. Takes the next
 * sequence number from the SA's reservation; updates the SA's counters.
 */
export function encodeEsp(sa: OutboundSa, inner: Uint8Array, out: Uint8Array, nowMs: number): EspEncodeResult {
  const nextHeader = nextHeaderFor(inner);
  if (nextHeader === 0) return { ok: false, reason: 'not-ip' };
  const t = sa.transform;
  const length = espPacketLength(t, inner.length);
  if (out.length < length) return { ok: false, reason: 'buffer-too-small' };
  const seq = sa.sequence.take();
  if (seq === SEQ_NOT_RESERVED) return { ok: false, reason: 'sequence-not-reserved' };
  if (seq === SEQ_EXHAUSTED) return { ok: false, reason: 'sequence-exhausted' };

  if (t.kind === 'aead') {
    out.set(inner, ESP_GCM_PREFIX);
    const sealed = frameEspGcm(out, ESP_GCM_PREFIX, inner.length, nextHeader, sa, t, seq, nonceAad, 0, nowMs);
    const cipher = createCipheriv(cipherName(t) as 'aes-128-gcm', t.key, nonceAad.subarray(0, 12), { authTagLength: t.icvLength });
    cipher.setAAD(nonceAad.subarray(12));
    let pos = put(out, ESP_GCM_PREFIX, cipher.update(out.subarray(ESP_GCM_PREFIX, ESP_GCM_PREFIX + sealed)));
    pos = put(out, pos, cipher.final());
    pos = put(out, pos, cipher.getAuthTag());
    return { ok: true, length: pos, seq };
  }
  writeEspHeader(out, 0, sa.spi, seq);
  const trailerLength = writeEspTrailer(trailer, 0, espPadLength(inner.length, paddingBlock(t)), nextHeader);
  const ivStart = ESP_HEADER_LENGTH;
  randomFillSync(out, ivStart, CBC_IV_LENGTH);
  let pos = ivStart + CBC_IV_LENGTH;
  const cipher = createCipheriv(cipherName(t), t.encKey, out.subarray(ivStart, pos));
  cipher.setAutoPadding(false);
  pos = put(out, pos, cipher.update(inner));
  pos = put(out, pos, cipher.update(trailer.subarray(0, trailerLength)));
  pos = put(out, pos, cipher.final());
  const mac = createHmac(t.auth === 'hmac(sha256)' ? 'sha256' : 'sha512', t.authKey);
  mac.update(out.subarray(0, pos));
  mac.update(esnHighBytes(seq, esnHigh));
  pos = put(out, pos, mac.digest().subarray(0, t.icvLength));
  countSaUse(sa, inner.length, nowMs);
  return { ok: true, length: pos, seq };
}

function put(out: Uint8Array, pos: number, chunk: Uint8Array): number {
  out.set(chunk, pos);
  return pos + chunk.length;
}

/** encodeEsp into a fresh buffer of the right size: the ESP packet, or the failure reason. */
export function sealEsp(sa: OutboundSa, inner: Uint8Array, nowMs: number): Uint8Array | EspEncodeFailure {
  const out = new Uint8Array(espPacketLength(sa.transform, inner.length));
  const r = encodeEsp(sa, inner, out, nowMs);
  return r.ok ? out.subarray(0, r.length) : r.reason;
}
