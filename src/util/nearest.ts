// "Did you mean …?": the known word nearest to a typo (Levenshtein distance), if near enough.

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/**
 * The candidate nearest to `word` (case-insensitive), or undefined if none is within maxDistance
 * edits (short words such as flag values want a tighter bound than the default).
 */
export function nearest(word: string, candidates: readonly string[], maxDistance = Math.max(3, Math.floor(word.length / 3))): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) { bestD = d; best = c; }
  }
  return bestD <= maxDistance ? best : undefined;
}
