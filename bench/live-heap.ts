// What the in-process memory benches (peer-memory, ipsec-peer-memory, wireguard-mode-memory) read:
// the heap still live after full collections, with V8's collector exposed to this thread.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
/** A full collection of this thread's heap. */
export const gc = runInNewContext('gc') as () => void;

/** Bytes live after three full collections: V8's heap, external memory and array buffers. */
export function liveHeapBytes(): number {
  for (let k = 0; k < 3; k++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}
