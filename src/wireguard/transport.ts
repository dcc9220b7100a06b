// Transport data messages (paper §5.4.6): header (type 4, receiver, 64-bit counter) then
// ChaCha20-Poly1305 of the zero-padded plaintext, nonce = 4 zero bytes || counter (little
// endian), empty AAD. An empty plaintext is a keepalive. frameTransport() is the one place that
// lays a transport packet out; the single-packet path here and the batch engine (which seals
// natively) both call it.
import { AEAD_TAG_SIZE, aeadOpenInto, aeadSealInto } from '../crypto/index.js';
import { MESSAGE_PADDING_MULTIPLE, MESSAGE_TRANSPORT_HEADER_SIZE, MESSAGE_TRANSPORT_MIN_SIZE } from './constants.js';
import { writeTransportHeader, writeTransportNonce } from './messages.js';
import type { Keypair } from './keypair.js';

const nonce = new Uint8Array(12);

/** Plaintext length after padding to a multiple of 16, capped at the tunnel MTU (0 = no cap). */
export function paddedLength(length: number, mtu: number): number {
  const padded = Math.ceil(length / MESSAGE_PADDING_MULTIPLE) * MESSAGE_PADDING_MULTIPLE;
  return mtu > 0 && padded > mtu ? Math.max(mtu, length) : padded;
}

/** The datagram length for a padded plaintext: header before it, tag after it. */
export function transportLength(padded: number): number {
  return padded + MESSAGE_TRANSPORT_MIN_SIZE;
}

/**
 * Frames the inner packet at buf[off..off+len) in place as transport data under kp: reserves its
 * send counter, zero-pads the packet (paddedLength), writes the header into the 16 bytes before
 * it and the nonce at nonceBuf[nonceOff..+12). Returns the padded length: seal buf[off..off+padded)
 * with kp.sendKey and that nonce, the tag right after it. -1 when kp has no counter left (nothing
 * written; a new handshake is needed). Allocation-free.
 */
export function frameTransport(buf: Uint8Array, off: number, len: number, kp: Keypair, mtu: number, nonceBuf: Uint8Array, nonceOff: number): number {
  const counter = kp.reserveSendCounters(1);
  if (counter < 0) return -1;
  const padded = paddedLength(len, mtu);
  for (let i = off + len; i < off + padded; i++) buf[i] = 0; // < 16 bytes: no Buffer.fill call per packet
  writeTransportHeader(buf, kp.remoteIndex, counter, off - MESSAGE_TRANSPORT_HEADER_SIZE);
  writeTransportNonce(nonceBuf, nonceOff, counter);
  return padded;
}

/** A single packet sealed under kp into a new datagram; null when kp has no counter left. */
export function sealTransport(kp: Keypair, packet: Uint8Array, mtu: number): Uint8Array | null {
  // Its own ArrayBuffer: a keepalive's 32 bytes would start on V8's heap and be copied out for the AEAD.
  const out = new Uint8Array(new ArrayBuffer(transportLength(paddedLength(packet.length, mtu))));
  out.set(packet, MESSAGE_TRANSPORT_HEADER_SIZE);
  const padded = frameTransport(out, MESSAGE_TRANSPORT_HEADER_SIZE, packet.length, kp, mtu, nonce, 0);
  if (padded < 0) return null;
  const plaintext = out.subarray(MESSAGE_TRANSPORT_HEADER_SIZE, MESSAGE_TRANSPORT_HEADER_SIZE + padded);
  aeadSealInto(out.subarray(MESSAGE_TRANSPORT_HEADER_SIZE), kp.sendKey, nonce, plaintext); // in place
  return out;
}

/** Decrypts a transport datagram under kp; the padded plaintext, or null if it does not authenticate. */
export function openTransport(kp: Keypair, counter: number, datagram: Uint8Array): Uint8Array | null {
  writeTransportNonce(nonce, 0, counter);
  const sealed = datagram.subarray(MESSAGE_TRANSPORT_HEADER_SIZE);
  const plaintext = new Uint8Array(sealed.length - AEAD_TAG_SIZE);
  return aeadOpenInto(plaintext, kp.receiveKey, nonce, sealed) ? plaintext : null;
}

/**
 * Length of the IP packet at p[off..off+avail) (a decrypted, padded plaintext), from its own
 * header; -1 if it is not a consistent IPv4/IPv6 packet. Padding is cut off with it. The offset
 * form lets a batched datapath use it on its buffer without a view per packet.
 */
export function innerPacketLength(p: Uint8Array, off = 0, avail = p.length - off): number {
  if (avail < 1) return -1;
  const version = p[off]! >> 4;
  if (version === 4) {
    if (avail < 20) return -1;
    const total = (p[off + 2]! << 8) | p[off + 3]!;
    return total >= 20 && total <= avail ? total : -1;
  }
  if (version === 6) {
    if (avail < 40) return -1;
    const total = 40 + ((p[off + 4]! << 8) | p[off + 5]!);
    return total <= avail ? total : -1;
  }
  return -1;
}
