// The ESP packet layout (RFC 4303) and the RFC 4106 nonce/AAD, as small offset-based functions on
// byte arrays that allocate nothing: the single-packet code (esp-encoder/decoder.ts) and the batch
// engine (src/datapath/esp-engine.ts) lay out and check packets only through them.
//
//   SPI (4) | sequence low 32 (4) | IV (8 GCM / 16 CBC) | encrypted: inner packet, padding 1,2,3..,
//   pad length (1), next header (1) | ICV
import { ipFamilyOf } from '../net/ip-packet.js';
import type { EspTransform } from './esp-transform.js';
import { GCM_IV_LENGTH, GCM_SALT_LENGTH, ivLength, paddingBlock } from './esp-transform.js';

export const ESP_HEADER_LENGTH = 8;
/** SPI, sequence and the 8-byte IV: what precedes the encrypted part of an AES-GCM packet. */
export const ESP_GCM_PREFIX = ESP_HEADER_LENGTH + GCM_IV_LENGTH;
/** The RFC 4106 nonce (12 bytes) followed by the ESN AAD (12 bytes), as writeGcmNonceAad() lays them out. */
export const GCM_NONCE_AAD_LENGTH = 24;
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
const TWO_32 = 2 ** 32;

export function seqHigh(seq: number): number {
  return Math.floor(seq / TWO_32);
}

export function seqLow(seq: number): number {
  return seq % TWO_32;
}

function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24; buf[off + 1] = (v >>> 16) & 0xff; buf[off + 2] = (v >>> 8) & 0xff; buf[off + 3] = v & 0xff;
}

/** SPI and the low 32 bits of the sequence number, big-endian, at `offset`. */
export function writeEspHeader(buf: Uint8Array, offset: number, spi: number, seq: number): void {
  writeU32(buf, offset, spi >>> 0);
  writeU32(buf, offset + 4, seqLow(seq));
}

export function readEspSpi(buf: Uint8Array, offset = 0): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function readEspSeqLow(buf: Uint8Array, offset = 0): number {
  return readEspSpi(buf, offset + 4);
}

/** The RFC 4106 explicit IV: the full 64-bit sequence number, unique per SA by construction. */
export function writeGcmIv(buf: Uint8Array, offset: number, seq: number): void {
  writeU32(buf, offset, seqHigh(seq));
  writeU32(buf, offset + 4, seqLow(seq));
}

/**
 * At out[at..at+24): the RFC 4106 nonce, salt (4, read from salt[saltOff..]) || the packet's explicit
 * IV (8, read from iv[ivOff..]), then the RFC 4106 §5 AAD with ESN, SPI || seq-high || seq-low.
 */
export function writeGcmNonceAad(out: Uint8Array, at: number, salt: Uint8Array, saltOff: number, iv: Uint8Array, ivOff: number, spi: number, seq: number): void {
  for (let k = 0; k < GCM_SALT_LENGTH; k++) out[at + k] = salt[saltOff + k]!;
  for (let k = 0; k < GCM_IV_LENGTH; k++) out[at + GCM_SALT_LENGTH + k] = iv[ivOff + k]!;
  writeU32(out, at + 12, spi >>> 0);
  writeU32(out, at + 16, seqHigh(seq));
  writeU32(out, at + 20, seqLow(seq));
}

/** RFC 4106 nonce: salt (4) || explicit IV (8). */
export function gcmNonce(salt: Uint8Array, iv: Uint8Array, out = new Uint8Array(12)): Uint8Array {
  out.set(salt.subarray(0, GCM_SALT_LENGTH), 0);
  out.set(iv.subarray(0, GCM_IV_LENGTH), GCM_SALT_LENGTH);
  return out;
}

/** RFC 4106 §5 AAD: SPI || seq-high || seq-low with ESN (12 bytes), SPI || seq without (8). */
export function gcmAad(spi: number, seq: number, esn = true, out = new Uint8Array(esn ? 12 : 8)): Uint8Array {
  writeU32(out, 0, spi >>> 0);
  if (esn) {
    writeU32(out, 4, seqHigh(seq));
    writeU32(out, 8, seqLow(seq));
  } else {
    writeU32(out, 4, seqLow(seq));
  }
  return out;
}

/** The 4 bytes appended to the ICV input for ESN with a separate integrity algorithm (RFC 4303 §2.2.1). */
export function esnHighBytes(seq: number, out = new Uint8Array(4)): Uint8Array {
  writeU32(out, 0, seqHigh(seq));
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

/** The ESP next header for the inner packet at buf[off..off+len) (4 or 41), 0 if it is no IPv4/IPv6 packet. */
export function nextHeaderFor(buf: Uint8Array, off = 0, len = buf.length - off): number {
  const family = ipFamilyOf(buf, off, len);
  return family === 4 ? NEXT_HEADER_IPV4 : family === 6 ? NEXT_HEADER_IPV6 : 0;
}

/** The whole ESP packet length (without UDP) for an inner packet of `innerLength` bytes. */
export function espPacketLength(t: EspTransform, innerLength: number): number {
  const encrypted = innerLength + espPadLength(innerLength, paddingBlock(t)) + 2;
  return ESP_HEADER_LENGTH + ivLength(t) + encrypted + t.icvLength;
}

/** The encrypted part's length (inner packet and trailer) of an ESP packet of `packetLength` bytes. */
export function espEncryptedLength(t: EspTransform, packetLength: number): number {
  return packetLength - ESP_HEADER_LENGTH - ivLength(t) - t.icvLength;
}

/**
 * Checks the decrypted part buf[off..off+len) (inner packet, padding 1,2,3.., pad length, next
 * header): the inner packet's length, or why it is refused: a wrong trailer ('bad-padding'), or an
 * inner packet that is not the IP packet the next header names ('bad-next-header').
 */
export function checkEspPayload(buf: Uint8Array, off: number, len: number): number | 'bad-padding' | 'bad-next-header' {
  if (len < 2) return 'bad-padding';
  const padLength = buf[off + len - 2]!;
  const payload = len - 2 - padLength;
  if (payload < 0) return 'bad-padding';
  for (let k = 0; k < padLength; k++) if (buf[off + payload + k] !== k + 1) return 'bad-padding';
  return nextHeaderFor(buf, off, payload) === buf[off + len - 1] ? payload : 'bad-next-header';
}
