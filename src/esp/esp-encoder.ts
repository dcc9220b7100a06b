// ESP tunnel-mode encapsulation of one inner IP packet (RFC 4303), AES-GCM per RFC 4106 or AES-CBC
// (RFC 3602) with HMAC-SHA-256/512 (RFC 4868), always with extended sequence numbers. Single packets
// through node:crypto; the layout helpers in esp-packet.ts are what a batch path reuses.
import { createCipheriv, createHmac, randomFillSync } from 'node:crypto';
import type { OutboundSa } from './security-association.js';
import { cipherName, CBC_IV_LENGTH, GCM_IV_LENGTH, paddingBlock } from './esp-transform.js';
import {
  ESP_HEADER_LENGTH, esnHighBytes, espPacketLength, espPadLength, gcmAad, gcmNonce, nextHeaderFor,
  writeEspHeader, writeEspTrailer, writeGcmIv,
} from './esp-packet.js';
import { SEQ_EXHAUSTED, SEQ_NOT_RESERVED } from './sequence-store.js';

export type EspEncodeFailure = 'not-ip' | 'sequence-not-reserved' | 'sequence-exhausted' | 'buffer-too-small';
export type EspEncodeResult = { ok: true; length: number; seq: number } | { ok: false; reason: EspEncodeFailure };

// Scratch space reused across packets (single-threaded).
const trailer = new Uint8Array(2 + 15);
const nonce = new Uint8Array(12);
const aad = new Uint8Array(12);
const esnHigh = new Uint8Array(4);

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

  writeEspHeader(out, 0, sa.spi, seq);
  const padLength = espPadLength(inner.length, paddingBlock(t));
  const trailerLength = writeEspTrailer(trailer, 0, padLength, nextHeader);
  let pos: number;
  if (t.kind === 'aead') {
    writeGcmIv(out, ESP_HEADER_LENGTH, seq);
    pos = ESP_HEADER_LENGTH + GCM_IV_LENGTH;
    gcmNonce(t.salt, out.subarray(ESP_HEADER_LENGTH, pos), nonce);
    const cipher = createCipheriv(cipherName(t) as 'aes-128-gcm', t.key, nonce, { authTagLength: t.icvLength });
    cipher.setAAD(gcmAad(sa.spi, seq, true, aad));
    pos = put(out, pos, cipher.update(inner));
    pos = put(out, pos, cipher.update(trailer.subarray(0, trailerLength)));
    pos = put(out, pos, cipher.final());
    pos = put(out, pos, cipher.getAuthTag());
  } else {
    const ivStart = ESP_HEADER_LENGTH;
    randomFillSync(out, ivStart, CBC_IV_LENGTH);
    pos = ivStart + CBC_IV_LENGTH;
    const cipher = createCipheriv(cipherName(t), t.encKey, out.subarray(ivStart, pos));
    cipher.setAutoPadding(false);
    pos = put(out, pos, cipher.update(inner));
    pos = put(out, pos, cipher.update(trailer.subarray(0, trailerLength)));
    pos = put(out, pos, cipher.final());
    const mac = createHmac(t.auth === 'hmac(sha256)' ? 'sha256' : 'sha512', t.authKey);
    mac.update(out.subarray(0, pos));
    mac.update(esnHighBytes(seq, esnHigh));
    pos = put(out, pos, mac.digest().subarray(0, t.icvLength));
  }
  sa.counters.bytes += inner.length;
  sa.counters.packets++;
  sa.counters.useTimeMs = nowMs;
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
