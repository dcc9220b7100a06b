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
  sender: number;
  ephemeral: Uint8Array; // 32
  encryptedStatic: Uint8Array; // 32 + 16
  encryptedTimestamp: Uint8Array; // 12 + 16
  mac1: Uint8Array; // 16
  mac2: Uint8Array; // 16
}

export interface ResponseMessage {
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
 * The message type of a datagram if its 4-byte header is well formed (type 1..4, reserved bytes
 * zero), else 0.
 */
export function messageType(b: Uint8Array): number {
  if (b.length < 4 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return 0;
  const t = b[0]!;
  return t >= MESSAGE_INITIATION_TYPE && t <= MESSAGE_TRANSPORT_TYPE ? t : 0;
}

function header(b: Uint8Array, type: number, size: number, exact: boolean): DropReason | null {
  if (messageType(b) !== type) return 'badType';
  if (exact ? b.length !== size : b.length < size) return 'badLength';
  return null;
}

/** An initiation's fields as views into b (its layout, in one place). */
function initiationFields(b: Uint8Array): InitiationMessage {
  return {
    sender: view(b).getUint32(4, true),
    ephemeral: b.subarray(8, 40),
    encryptedStatic: b.subarray(40, 88),
    encryptedTimestamp: b.subarray(88, 116),
    mac1: b.subarray(116, 132),
    mac2: b.subarray(132, 148),
  };
}

export function parseInitiation(b: Uint8Array): InitiationMessage | DropReason {
  return header(b, MESSAGE_INITIATION_TYPE, MESSAGE_INITIATION_SIZE, true) ?? initiationFields(b);
}

/** A zeroed initiation with its header and sender written; the handshake fills the field views in place. */
export function newInitiation(sender: number): { bytes: Uint8Array; fields: InitiationMessage } {
  const b = new Uint8Array(MESSAGE_INITIATION_SIZE);
  b[0] = MESSAGE_INITIATION_TYPE;
  view(b).setUint32(4, sender, true);
  return { bytes: b, fields: initiationFields(b) };
}

/** A response's fields as views into b. */
function responseFields(b: Uint8Array): ResponseMessage {
  const v = view(b);
  return {
    sender: v.getUint32(4, true),
    receiver: v.getUint32(8, true),
    ephemeral: b.subarray(12, 44),
    encryptedNothing: b.subarray(44, 60),
    mac1: b.subarray(60, 76),
    mac2: b.subarray(76, 92),
  };
}

export function parseResponse(b: Uint8Array): ResponseMessage | DropReason {
  return header(b, MESSAGE_RESPONSE_TYPE, MESSAGE_RESPONSE_SIZE, true) ?? responseFields(b);
}

/** A zeroed response with its header and indexes written; the handshake fills the field views in place. */
export function newResponse(sender: number, receiver: number): { bytes: Uint8Array; fields: ResponseMessage } {
  const b = new Uint8Array(MESSAGE_RESPONSE_SIZE);
  b[0] = MESSAGE_RESPONSE_TYPE;
  const v = view(b);
  v.setUint32(4, sender, true);
  v.setUint32(8, receiver, true);
  return { bytes: b, fields: responseFields(b) };
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

/** Checks a transport message's header and minimum size; null when well formed. */
export function checkTransport(b: Uint8Array): DropReason | null {
  return header(b, MESSAGE_TRANSPORT_TYPE, MESSAGE_TRANSPORT_MIN_SIZE, false);
}

/** Receiver index of a transport message (call after checkTransport). Allocation-free. */
export function transportReceiver(b: Uint8Array): number {
  return (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
}

/** 64-bit counter of a transport message as a number (exact below 2^53). Allocation-free. */
export function transportCounter(b: Uint8Array): number {
  const lo = (b[8]! | (b[9]! << 8) | (b[10]! << 16) | (b[11]! << 24)) >>> 0;
  const hi = (b[12]! | (b[13]! << 8) | (b[14]! << 16) | (b[15]! << 24)) >>> 0;
  return hi * 0x1_0000_0000 + lo;
}

/** Writes the 16-byte transport header at out[offset]. Allocation-free. */
export function writeTransportHeader(out: Uint8Array, receiver: number, counter: number, offset = 0): void {
  out[offset] = MESSAGE_TRANSPORT_TYPE;
  out[offset + 1] = out[offset + 2] = out[offset + 3] = 0;
  out[offset + 4] = receiver & 0xff;
  out[offset + 5] = (receiver >>> 8) & 0xff;
  out[offset + 6] = (receiver >>> 16) & 0xff;
  out[offset + 7] = (receiver >>> 24) & 0xff;
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x1_0000_0000) >>> 0;
  for (let i = 0; i < 4; i++) {
    out[offset + 8 + i] = (lo >>> (8 * i)) & 0xff;
    out[offset + 12 + i] = (hi >>> (8 * i)) & 0xff;
  }
}

export { MESSAGE_TRANSPORT_HEADER_SIZE };
