// Per-peer lists that almost always hold one element (a peer's SAs under one key, its one prefix):
// kept as the element itself, an array only when there are more. An array of one is ~56 B (the
// array and its elements), and a peer had several of them on each thread.

export type OneOrMore<T> = T | T[];

/** The elements as an array (the array itself, or a new one of the one element). */
export function listOf<T>(x: OneOrMore<T>): T[] {
  return Array.isArray(x) ? x : [x];
}

/** As a peer keeps it: the one element itself, else an array of exactly these (a copy). */
export function oneOrMore<T>(xs: readonly T[]): OneOrMore<T> {
  return xs.length === 1 ? xs[0]! : xs.slice(); // slice: exact size (an array grown by push keeps 17 slots, 152 B a peer)
}

/** The same elements in the same order, whichever form either holds them in (no array made). */
export function sameElements<T>(a: OneOrMore<T>, b: OneOrMore<T>): boolean {
  if (!Array.isArray(a) || !Array.isArray(b)) return Array.isArray(a) ? a.length === 1 && a[0] === b : Array.isArray(b) ? b.length === 1 && b[0] === a : a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Calls `f` with each element (no array made for the one element: for loops over every peer). */
export function eachOf<T>(x: OneOrMore<T>, f: (v: T) => void): void {
  if (Array.isArray(x)) for (let i = 0; i < x.length; i++) f(x[i]!);
  else f(x);
}
