// Text in columns for people (CLI output and the operator's reports).

/** Left-aligned columns, like kubectl's tabwriter output. */
export function table(rows: string[][], gap = 3): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + gap))).join('')).join('\n');
}
