// Transport data messages on the single-packet path (paper §5.4.6): header (type 4, receiver,
// 64-bit counter) then ChaCha20-Poly1305 of the zero-padded plaintext, nonce = 4 zero bytes ||
// counter (little endian), empty AAD. An empty plaintext is a keepalive.
import { aeadOpen, aeadSeal, counterNonce } from '../crypto/index.js';
import { MESSAGE_PADDING_MULTIPLE, MESSAGE_TRANSPORT_HEADER_SIZE } from './constants.js';
import { writeTransportHeader } from './messages.js';
import type { Keypair } from './keypair.js';

const nonce = new Uint8Array(12);

/** Plaintext length after padding to a multiple of 16, capped at the tunnel MTU (0 = no cap). */
export function paddedLength(length: number, mtu: number): number {
  const padded = Math.ceil(length / MESSAGE_PADDING_MULTIPLE) * MESSAGE_PADDING_MULTIPLE;
  return mtu > 0 && padded > mtu ? Math.max(mtu, length) : padded;
}

/** Encrypts one packet with `counter` (already reserved on the keypair) into a new datagram. */
export function sealTransport(kp: Keypair, counter: number, packet: Uint8Array, mtu: number): Uint8Array {
  const padded = paddedLength(packet.length, mtu);
  let plaintext = packet;
  if (padded !== packet.length) {
    plaintext = new Uint8Array(padded);
    plaintext.set(packet);
  }
  const sealed = aeadSeal(kp.sendKey, counterNonce(counter, nonce), plaintext);
  const out = new Uint8Array(MESSAGE_TRANSPORT_HEADER_SIZE + sealed.length);
  writeTransportHeader(out, kp.remoteIndex, counter);
  out.set(sealed, MESSAGE_TRANSPORT_HEADER_SIZE);
  return out;
}

/** Decrypts a transport datagram under kp; the padded plaintext, or null if it does not authenticate. */
export function openTransport(kp: Keypair, counter: number, datagram: Uint8Array): Uint8Array | null {
  return aeadOpen(kp.receiveKey, counterNonce(counter, nonce), datagram.subarray(MESSAGE_TRANSPORT_HEADER_SIZE));
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
