// Wire formats of the four WireGuard messages (paper §5.4). Little-endian integers; the first byte
// is the type, the next three are zero. Parsers check length and type strictly and return a typed
// message or a DropReason string; they never throw, and the fields are views into the input.
import {
  MESSAGE_INITIATION_TYPE, MESSAGE_RESPONSE_TYPE, MESSAGE_COOKIE_REPLY_TYPE, MESSAGE_TRANSPORT_TYPE,
  MESSAGE_INITIATION_SIZE, MESSAGE_RESPONSE_SIZE, MESSAGE_COOKIE_REPLY_SIZE, MESSAGE_TRANSPORT_MIN_SIZE,
  MESSAGE_TRANSPORT_HEADER_SIZE,
} from './constants.js';
import type { DropReason } from './stats.js';

export interface InitiationMessage {
  /** The whole message (148 bytes); the fields below are views into it. */
  bytes: Uint8Array;
  sender: number;
  ephemeral: Uint8Array; // 32
  encryptedStatic: Uint8Array; // 32 + 16
  encryptedTimestamp: Uint8Array; // 12 + 16
  mac1: Uint8Array; // 16
  mac2: Uint8Array; // 16
}

export interface ResponseMessage {
  /** The whole message (92 bytes); the fields below are views into it. */
  bytes: Uint8Array;
  sender: number;
  receiver: number;
  ephemeral: Uint8Array; // 32
  encryptedNothing: Uint8Array; // 16
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface CookieReplyMessage {
  receiver: number;
  nonce: Uint8Array; // 24
  encryptedCookie: Uint8Array; // 16 + 16
}

/** Offsets of mac1 and mac2 from the end of a handshake message. */
export const MAC1_FROM_END = 32;
export const MAC2_FROM_END = 16;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The message type of the datagram at b[off..off+len) if its 4-byte header is well formed (type
 * 1..4, reserved bytes zero), else 0. The offset form serves a batch buffer without a view.
 */
export function messageType(b: Uint8Array, off = 0, len = b.length - off): number {
  if (len < 4 || b[off + 1] !== 0 || b[off + 2] !== 0 || b[off + 3] !== 0) return 0;
  const t = b[off]!;
  return t >= MESSAGE_INITIATION_TYPE && t <= MESSAGE_TRANSPORT_TYPE ? t : 0;
}

function header(b: Uint8Array, type: number, size: number, exact: boolean, off = 0, len = b.length - off): DropReason | null {
  if (messageType(b, off, len) !== type) return 'badType';
  if (exact ? len !== size : len < size) return 'badLength';
  return null;
}

/**
 * An initiation's fields as views into its bytes (its layout, in one place), each made when read:
 * the native handshake steps take the whole message, so most are never read (a handshake made
 * ~20 views and their objects before).
 */
class InitiationFields implements InitiationMessage {
  constructor(readonly bytes: Uint8Array) {}
  get sender(): number { return readU32le(this.bytes, 4); }
  get ephemeral(): Uint8Array { return this.bytes.subarray(8, 40); }
  get encryptedStatic(): Uint8Array { return this.bytes.subarray(40, 88); }
  get encryptedTimestamp(): Uint8Array { return this.bytes.subarray(88, 116); }
  get mac1(): Uint8Array { return this.bytes.subarray(116, 132); }
  get mac2(): Uint8Array { return this.bytes.subarray(132, 148); }
}

export function parseInitiation(b: Uint8Array): InitiationMessage | DropReason {
  return header(b, MESSAGE_INITIATION_TYPE, MESSAGE_INITIATION_SIZE, true) ?? new InitiationFields(b);
}

/** A zeroed initiation with its header and sender written; the handshake fills the field views in place. */
export function newInitiation(sender: number): { bytes: Uint8Array; fields: InitiationMessage } {
  const b = new Uint8Array(MESSAGE_INITIATION_SIZE);
  b[0] = MESSAGE_INITIATION_TYPE;
  writeU32le(b, 4, sender);
  return { bytes: b, fields: new InitiationFields(b) };
}

/** A response's fields as views into its bytes, made when read (as InitiationFields). */
class ResponseFields implements ResponseMessage {
  constructor(readonly bytes: Uint8Array) {}
  get sender(): number { return readU32le(this.bytes, 4); }
  get receiver(): number { return readU32le(this.bytes, 8); }
  get ephemeral(): Uint8Array { return this.bytes.subarray(12, 44); }
  get encryptedNothing(): Uint8Array { return this.bytes.subarray(44, 60); }
  get mac1(): Uint8Array { return this.bytes.subarray(60, 76); }
  get mac2(): Uint8Array { return this.bytes.subarray(76, 92); }
}

export function parseResponse(b: Uint8Array): ResponseMessage | DropReason {
  return header(b, MESSAGE_RESPONSE_TYPE, MESSAGE_RESPONSE_SIZE, true) ?? new ResponseFields(b);
}

/**
 * One of each message class kept for the process's life. V8 holds the map that a constructor's
 * property writes lead to only weakly (a transition), so a full collection that found no live
 * instance collected it and threw away every optimized function that makes one (--trace-deopt:
 * "marking dependent code ... reason: weak objects"). Messages die at once, and the rekeys come
 * as a wave every ~150 s with a compaction between: the handshake path was compiled again at each
 * wave (docs/performance-log.md, session 37, wgs37).
 */
export const KEPT_MESSAGE_SHAPES: readonly object[] = [
  new InitiationFields(Buffer.alloc(MESSAGE_INITIATION_SIZE)), new ResponseFields(Buffer.alloc(MESSAGE_RESPONSE_SIZE)),
];

/** A zeroed response with its header and indexes written; the handshake fills the field views in place. */
export function newResponse(sender: number, receiver: number): { bytes: Uint8Array; fields: ResponseMessage } {
  const b = new Uint8Array(MESSAGE_RESPONSE_SIZE);
  b[0] = MESSAGE_RESPONSE_TYPE;
  writeU32le(b, 4, sender);
  writeU32le(b, 8, receiver);
  return { bytes: b, fields: new ResponseFields(b) };
}

export function parseCookieReply(b: Uint8Array): CookieReplyMessage | DropReason {
  const bad = header(b, MESSAGE_COOKIE_REPLY_TYPE, MESSAGE_COOKIE_REPLY_SIZE, true);
  if (bad) return bad;
  return { receiver: view(b).getUint32(4, true), nonce: b.subarray(8, 32), encryptedCookie: b.subarray(32, 64) };
}

export function serializeCookieReply(m: CookieReplyMessage): Uint8Array {
  const b = new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE);
  b[0] = MESSAGE_COOKIE_REPLY_TYPE;
  view(b).setUint32(4, m.receiver, true);
  b.set(m.nonce, 8);
  b.set(m.encryptedCookie, 32);
  return b;
}

/** Checks the header and minimum size of the transport message at b[off..off+len); null when well formed. */
export function checkTransport(b: Uint8Array, off = 0, len = b.length - off): DropReason | null {
  return header(b, MESSAGE_TRANSPORT_TYPE, MESSAGE_TRANSPORT_MIN_SIZE, false, off, len);
}

function writeU32le(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = v >>> 24;
}

function readU32le(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/** Receiver index of the transport message at b[off] (call after checkTransport). Allocation-free. */
export function transportReceiver(b: Uint8Array, off = 0): number {
  return readU32le(b, off + 4);
}

/** 64-bit counter of the transport message at b[off] as a number (exact below 2^53). Allocation-free. */
export function transportCounter(b: Uint8Array, off = 0): number {
  return readU32le(b, off + 12) * 0x1_0000_0000 + readU32le(b, off + 8);
}

/** Writes counter (< 2^53) as 8 little-endian bytes at out[offset]. */
function writeU64le(out: Uint8Array, offset: number, counter: number): void {
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x1_0000_0000) >>> 0;
  out[offset] = lo & 0xff; out[offset + 1] = (lo >>> 8) & 0xff; out[offset + 2] = (lo >>> 16) & 0xff; out[offset + 3] = lo >>> 24;
  out[offset + 4] = hi & 0xff; out[offset + 5] = (hi >>> 8) & 0xff; out[offset + 6] = (hi >>> 16) & 0xff; out[offset + 7] = hi >>> 24;
}

/** Writes the 16-byte transport header at out[offset]. Allocation-free. */
export function writeTransportHeader(out: Uint8Array, receiver: number, counter: number, offset = 0): void {
  out[offset] = MESSAGE_TRANSPORT_TYPE;
  out[offset + 1] = out[offset + 2] = out[offset + 3] = 0;
  out[offset + 4] = receiver & 0xff;
  out[offset + 5] = (receiver >>> 8) & 0xff;
  out[offset + 6] = (receiver >>> 16) & 0xff;
  out[offset + 7] = (receiver >>> 24) & 0xff;
  writeU64le(out, offset + 8, counter);
}

/** The transport nonce, 4 zero bytes || counter (little endian), at out[offset..offset+12). */
export function writeTransportNonce(out: Uint8Array, offset: number, counter: number): void {
  out[offset] = out[offset + 1] = out[offset + 2] = out[offset + 3] = 0;
  writeU64le(out, offset + 4, counter);
}

/**
 * Turns the received transport message at b[off] into its own nonce, in place, and returns the
 * nonce's offset: the counter already follows the receiver index, so zeroing the (already read)
 * index makes bytes 4..16 the nonce. No room outside the datagram is needed, which GRO segments,
 * back to back in one buffer, do not have.
 */
export function transportNonceInPlace(b: Uint8Array, off: number): number {
  b[off + 4] = b[off + 5] = b[off + 6] = b[off + 7] = 0;
  return off + 4;
}

export { MESSAGE_TRANSPORT_HEADER_SIZE };
