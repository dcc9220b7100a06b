// What the in-process memory benches (peer-memory, ipsec-peer-memory, wireguard-mode-memory) read:
// the heap still live after full collections, with V8's collector exposed to this thread.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
/** A full collection of this thread's heap. */
export const gc = runInNewContext('gc') as () => void;

/**
 * Bytes live after three full collections: V8's heap and external memory. `external` includes the
 * array buffers' backing stores (Node's `arrayBuffers` is a part of it, not more): adding both counted
 * every buffer twice (~340 B a WireGuard peer: its key and peer slots, the allowed-IPs trie; session 38).
 */
export function liveHeapBytes(): number {
  for (let k = 0; k < 3; k++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
