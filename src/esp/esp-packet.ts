// The ESP packet layout (RFC 4303) and the RFC 4106 nonce/AAD, as small functions on byte arrays, so
// that a native batch path can build exactly the same packets as the single-packet code here.
//
//   SPI (4) | sequence low 32 (4) | IV (8 GCM / 16 CBC) | encrypted: inner packet, padding 1,2,3..,
//   pad length (1), next header (1) | ICV
import type { EspTransform } from './esp-transform.js';
import { ivLength, paddingBlock } from './esp-transform.js';

export const ESP_HEADER_LENGTH = 8;
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
const TWO_32 = 2 ** 32;

export function seqHigh(seq: number): number {
  return Math.floor(seq / TWO_32);
}

export function seqLow(seq: number): number {
  return seq % TWO_32;
}

/** SPI and the low 32 bits of the sequence number, big-endian, at `offset`. */
export function writeEspHeader(buf: Uint8Array, offset: number, spi: number, seq: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, ESP_HEADER_LENGTH);
  v.setUint32(0, spi >>> 0);
  v.setUint32(4, seqLow(seq));
}

export function espHeader(spi: number, seq: number): Uint8Array {
  const b = new Uint8Array(ESP_HEADER_LENGTH);
  writeEspHeader(b, 0, spi, seq);
  return b;
}

export function readEspSpi(buf: Uint8Array, offset = 0): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function readEspSeqLow(buf: Uint8Array, offset = 0): number {
  return readEspSpi(buf, offset + 4);
}

/** The RFC 4106 explicit IV: the full 64-bit sequence number, unique per SA by construction. */
export function writeGcmIv(buf: Uint8Array, offset: number, seq: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, 8);
  v.setUint32(0, seqHigh(seq));
  v.setUint32(4, seqLow(seq));
}

/** RFC 4106 nonce: salt (4) || explicit IV (8). */
export function gcmNonce(salt: Uint8Array, iv: Uint8Array, out = new Uint8Array(12)): Uint8Array {
  out.set(salt.subarray(0, 4), 0);
  out.set(iv.subarray(0, 8), 4);
  return out;
}

/** RFC 4106 §5 AAD: SPI || seq-high || seq-low with ESN (12 bytes), SPI || seq without (8). */
export function gcmAad(spi: number, seq: number, esn = true, out = new Uint8Array(esn ? 12 : 8)): Uint8Array {
  const v = new DataView(out.buffer, out.byteOffset, out.length);
  v.setUint32(0, spi >>> 0);
  if (esn) {
    v.setUint32(4, seqHigh(seq));
    v.setUint32(8, seqLow(seq));
  } else {
    v.setUint32(4, seqLow(seq));
  }
  return out;
}

/** The 4 bytes appended to the ICV input for ESN with a separate integrity algorithm (RFC 4303 §2.2.1). */
export function esnHighBytes(seq: number, out = new Uint8Array(4)): Uint8Array {
  new DataView(out.buffer, out.byteOffset, 4).setUint32(0, seqHigh(seq));
  return out;
}

/** Padding bytes so that payload + padding + 2 is a multiple of `block`. */
export function espPadLength(payloadLength: number, block: number): number {
  return (block - ((payloadLength + 2) % block)) % block;
}

/** Writes padding 1, 2, 3, ..., the pad length and the next header at `offset`; returns the bytes written. */
export function writeEspTrailer(buf: Uint8Array, offset: number, padLength: number, nextHeader: number): number {
  for (let i = 0; i < padLength; i++) buf[offset + i] = i + 1;
  buf[offset + padLength] = padLength;
  buf[offset + padLength + 1] = nextHeader;
  return padLength + 2;
}

/** The ESP next header for an inner IP packet (4 or 41), 0 if it is neither IPv4 nor IPv6. */
export function nextHeaderFor(inner: Uint8Array): number {
  const version = inner.length > 0 ? inner[0]! >> 4 : 0;
  if (version === 4) return NEXT_HEADER_IPV4;
  if (version === 6) return NEXT_HEADER_IPV6;
  return 0;
}

/** The whole ESP packet length (without UDP) for an inner packet of `innerLength` bytes. */
export function espPacketLength(t: EspTransform, innerLength: number): number {
  const encrypted = innerLength + espPadLength(innerLength, paddingBlock(t)) + 2;
  return ESP_HEADER_LENGTH + ivLength(t) + encrypted + t.icvLength;
}

/** Checks the trailer at the end of a decrypted payload: monotonic padding 1,2,3... Returns the payload length, or -1. */
export function checkEspTrailer(plain: Uint8Array): number {
  const n = plain.length;
  if (n < 2) return -1;
  const padLength = plain[n - 2]!;
  const payloadLength = n - 2 - padLength;
  if (payloadLength < 0) return -1;
  for (let i = 0; i < padLength; i++) if (plain[payloadLength + i] !== i + 1) return -1;
  return payloadLength;
}
