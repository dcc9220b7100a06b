// How much the tunnel costs, two ways:
// - Cilium's figure (spec ipsec.md §6): overhead = 77 + (KeyLen - 16), what Cilium subtracts, so pod
//   MTUs match a Cilium cluster with the same key;
// - the real worst case of our ESP-in-UDP packet: outer IP + UDP 8 + ESP header 8 + IV + the most
//   padding + pad length/next header 2 + ICV.
// The TUN device MTU uses the larger of the two: never bigger than Cilium's, and always small enough
// that a full-size inner packet, encapsulated, still fits the underlay MTU.
import type { IpsecKey } from './ipsec-keyfile.js';
import { CBC_IV_LENGTH, GCM_IV_LENGTH, hmacIcvLength } from '../esp/esp-transform.js';

export const UDP_HEADER = 8;
export const ESP_HEADER = 8;
export const ESP_TRAILER = 2;

export function ciliumOverhead(keyLen: number): number {
  return 77 + (keyLen - 16);
}

/** Worst-case bytes ESP-in-UDP adds to an inner packet for this key, over an IPv4 or IPv6 underlay. */
export function espInUdpOverhead(key: IpsecKey, underlayFamily: 4 | 6 = 4): number {
  const outerIp = underlayFamily === 4 ? 20 : 40;
  const iv = key.kind === 'aead' ? GCM_IV_LENGTH : CBC_IV_LENGTH;
  const maxPad = key.kind === 'aead' ? 3 : 15; // pad to 4 bytes (RFC 4106) or the AES block (RFC 3602)
  const icv = key.kind === 'aead' ? key.icvBits / 8 : hmacIcvLength(key.auth);
  return outerIp + UDP_HEADER + ESP_HEADER + iv + maxPad + ESP_TRAILER + icv;
}

export interface TunnelMtu {
  /** MTU for the TUN device: underlay MTU minus `overhead`. */
  mtu: number;
  overhead: number;
  ciliumOverhead: number;
  espOverhead: number;
}

export function ipsecTunnelMtu(underlayMtu: number, key: IpsecKey, underlayFamily: 4 | 6 = 4): TunnelMtu {
  const cilium = ciliumOverhead(key.keyLen);
  const esp = espInUdpOverhead(key, underlayFamily);
  const overhead = Math.max(cilium, esp);
  return { mtu: underlayMtu - overhead, overhead, ciliumOverhead: cilium, espOverhead: esp };
}
