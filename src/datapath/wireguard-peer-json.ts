// A WireGuard peer as the agent's GET /encrypt lists it (Cilium's shape, api.ts's WireGuardPeerJson),
// from the engine's status of it. Made in the datapath worker, one peer at a time, into the list's
// JSON bytes (raw-json.ts): the whole list as objects was promoted on both threads at 5,000 peers.
import type { WireGuardPeerJson } from '../agent/api.js';
import type { WireGuardPeerStatus } from './messages.js';

/** Go's zero time: a peer never handshaken with. */
const NEVER = '0001-01-01T00:00:00.000Z';

export function wireGuardPeerJson(p: WireGuardPeerStatus): WireGuardPeerJson {
  return {
    node: p.name ?? undefined, 'public-key': p.publicKey, endpoint: p.endpoint ?? undefined, 'allowed-ips': p.allowedIPs,
    'last-handshake-time': p.lastHandshakeUnixMs ? new Date(p.lastHandshakeUnixMs).toISOString() : NEVER,
    'transfer-rx': p.rxBytes, 'transfer-tx': p.txBytes,
  };
}
