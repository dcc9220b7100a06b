// Reading Prometheus text exposition (what the agents serve): samples with their labels, and the
// HELP/TYPE of their family. Enough of the format for our own metrics and for tests.

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  type?: string;
  help?: string;
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(v: string): string {
  return v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

export function parsePrometheusText(text: string): MetricSample[] {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const out: MetricSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const meta = /^#\s+(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line);
    if (meta) { (meta[1] === 'HELP' ? help : type).set(meta[2]!, meta[3]!); continue; }
    if (line.startsWith('#')) continue;
    const m = SAMPLE_RE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_RE)) labels[l[1]!] = unescape(l[2]!);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    out.push({ name: m[1]!, labels, value: parseValue(m[3]!), type: type.get(m[1]!) ?? type.get(family), help: help.get(m[1]!) ?? help.get(family) });
  }
  return out;
}

/** The value of one sample, matching all the given labels; undefined if absent. */
export function sampleValue(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** One line per sample, `name{k="v"}  value`, as a column-aligned list for people. */
export function formatSamples(samples: MetricSample[]): string[][] {
  return samples.map((s) => {
    const l = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(',');
    return [`${s.name}${l ? `{${l}}` : ''}`, String(s.value)];
  });
}
