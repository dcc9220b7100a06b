// SPIs are the key ids 1..15, shared by all nodes (spec ipsec.md §8). Each rotation is exactly +1,
// 15 wraps to 1; towards a peer a node uses the older of its own and the peer's published SPI.
import { IPSEC_MAX_KEY_ID } from './ipsec-keyfile.js';

/** The id after `spi`: +1, 15 wraps to 1. */
export function nextKeyId(spi: number): number {
  return (spi % IPSEC_MAX_KEY_ID) + 1;
}

/**
 * The SPI to encrypt with towards a peer (Cilium's get_min_encrypt_key): the older of the two, where
 * 15 is older than 1. 0 (no key published) gives 0 = no encryption. Valid only while no node is more
 * than one key ahead.
 */
export function pairSpi(local: number, peer: number): number {
  if (peer === IPSEC_MAX_KEY_ID) return local === 1 ? IPSEC_MAX_KEY_ID : local;
  if (local === IPSEC_MAX_KEY_ID) return peer === 1 ? IPSEC_MAX_KEY_ID : peer;
  return Math.min(local, peer);
}
