// A YAML writer for the JSON-shaped objects veil prints (`-o yaml`), in kubectl's layout.

export function toYaml(value: unknown): string {
  return lines(value, 0).join('\n') + '\n';
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  const plain = /^[A-Za-z0-9_./+=-][A-Za-z0-9 _./+=:@-]*$/.test(s) && !/[ :]$/.test(s) && !/: /.test(s)
    && !/^(true|false|yes|no|on|off|null|~|-?\d+(\.\d+)?([eE][-+]?\d+)?)$/i.test(s);
  return plain ? s : JSON.stringify(s);
}

function isEmptyCollection(v: unknown): boolean {
  return typeof v === 'object' && v !== null && Object.keys(v).length === 0;
}

function lines(v: unknown, indent: number): string[] {
  const pad = ' '.repeat(indent);
  if (Array.isArray(v)) {
    if (!v.length) return [`${pad}[]`];
    return v.flatMap((item) => {
      if (typeof item === 'object' && item !== null && !isEmptyCollection(item)) {
        const inner = lines(item, indent + 2);
        return [`${pad}- ${inner[0]!.trimStart()}`, ...inner.slice(1)];
      }
      return [`${pad}- ${isEmptyCollection(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`];
    });
  }
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (!Object.keys(o).length) return [`${pad}{}`];
    return Object.keys(o).filter((k) => o[k] !== undefined).flatMap((k) => {
      const val = o[k];
      const key = scalar(k);
      if (typeof val === 'object' && val !== null && !isEmptyCollection(val)) {
        return [`${pad}${key}:`, ...lines(val, Array.isArray(val) ? indent : indent + 2)];
      }
      return [`${pad}${key}: ${isEmptyCollection(val) ? (Array.isArray(val) ? '[]' : '{}') : scalar(val)}`];
    });
  }
  return [`${pad}${scalar(v)}`];
}
