// What the sans-I/O core asks the shell to do. Every Device/Peer entry point returns a list of
// these; the shell performs them in order.
import type { Endpoint } from './endpoint.js';
import type { Peer } from './peer.js';
import type { DropReason } from './stats.js';

export type Action =
  /** Send `datagram` to `endpoint` over UDP. peer is null for a cookie reply to an unknown sender. */
  | { kind: 'network'; peer: Peer | null; endpoint: Endpoint; datagram: Uint8Array }
  /** Write the decrypted inner IP packet to the TUN device; it came from `peer`. */
  | { kind: 'tunnel'; peer: Peer; packet: Uint8Array }
  /** The packet was staged until a handshake completes (an initiation is in the same list or in flight). */
  | { kind: 'queued'; peer: Peer }
  /** The datagram/packet was dropped; also counted in device.stats.drops[reason]. */
  | { kind: 'drop'; reason: DropReason; peer: Peer | null }
  /** Append `text` to the Wireshark key log (only when the device has keylog enabled). */
  | { kind: 'keylog'; text: string }
  /** A new session became usable with `peer` (status: latest handshake). */
  | { kind: 'handshakeComplete'; peer: Peer };

/** Shared empty result: the common case allocates nothing. Never mutate it. */
export const NO_ACTIONS: readonly Action[] = Object.freeze([]) as readonly Action[];
