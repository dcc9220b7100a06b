// Maps kept across passes instead of made anew each pass: every entry a pass wants is marked with
// that pass's number, and what it did not mark is forgotten at its end. A pass over N entries then
// allocates only for what changed, where a Map made anew is N entries of garbage per pass.

/**
 * Deletes the entries of `kept` that pass `pass` did not mark, and returns their keys. passOf: where
 * an entry's mark is (its `pass`); onForget: told each value forgotten (e.g. to take it out of a sum).
 */
export function forgetUnmarked<K, V extends { pass: number }>(kept: Map<K, V>, pass: number, passOf?: undefined, onForget?: (v: V) => void): K[];
export function forgetUnmarked<K, V>(kept: Map<K, V>, pass: number, passOf: (v: V) => number, onForget?: (v: V) => void): K[];
export function forgetUnmarked<K, V>(kept: Map<K, V>, pass: number, passOf = (v: V) => (v as { pass: number }).pass, onForget?: (v: V) => void): K[] {
  const out: K[] = [];
  kept.forEach((v, key) => { // for-of would make an entry array per entry
    if (passOf(v) === pass) return;
    out.push(key);
    onForget?.(v);
  });
  for (const key of out) kept.delete(key);
  return out;
}
