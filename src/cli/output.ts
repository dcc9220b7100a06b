// -o json|yaml for every read command.
import { VeilError } from '../util/errors.js';

export type OutputFormat = 'json' | 'yaml';

function yamlScalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  return /^[A-Za-z0-9_./@:+-][A-Za-z0-9_ ./@:+-]*$/.test(s) && !/^(true|false|null|yes|no|~|-?\d+(\.\d+)?)$/i.test(s) && !s.endsWith(' ') && !s.includes(': ')
    ? s : JSON.stringify(s);
}

/** A small YAML emitter for plain JSON data (objects, arrays, scalars). */
export function toYaml(v: unknown, indent = ''): string {
  if (Array.isArray(v)) {
    if (!v.length) return `${indent}[]\n`;
    return v.map((item) => {
      if (item && typeof item === 'object' && Object.keys(item).length) {
        const inner = toYaml(item, indent + '  ');
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      return `${indent}- ${yamlScalar(item)}\n`;
    }).join('');
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    if (!entries.length) return `${indent}{}\n`;
    return entries.map(([k, x]) => {
      if (x && typeof x === 'object' && (Array.isArray(x) ? x.length : Object.keys(x).length)) {
        return `${indent}${k}:\n${toYaml(x, indent + '  ')}`;
      }
      if (x && typeof x === 'object') return `${indent}${k}: ${Array.isArray(x) ? '[]' : '{}'}\n`;
      return `${indent}${k}: ${yamlScalar(x)}\n`;
    }).join('');
  }
  return `${indent}${yamlScalar(v)}\n`;
}

export function printStructured(v: unknown, format: OutputFormat | string): void {
  if (format === 'json') process.stdout.write(JSON.stringify(v, null, 2) + '\n');
  else if (format === 'yaml') process.stdout.write(toYaml(v));
  else throw new VeilError('BAD_OUTPUT', `unknown output format "${format}"`, 'use -o json or -o yaml');
}
