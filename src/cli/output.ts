// -o json|yaml for every read command. YAML as kubectl writes it: sequences flush with their key, no
// folded lines, and YAML 1.1 quoting, so strings such as "on", "yes" or a timestamp read back as the
// same strings in a 1.1 reader (kubectl's) too.
import { stringify } from 'yaml';
import { UsageError } from './flags.js';

export type OutputFormat = 'json' | 'yaml';

export function toYaml(v: unknown): string {
  return stringify(v, { version: '1.1', indentSeq: false, lineWidth: 0 });
}

export function printStructured(v: unknown, format: OutputFormat | string): void {
  if (format === 'json') process.stdout.write(JSON.stringify(v, null, 2) + '\n');
  else if (format === 'yaml') process.stdout.write(toYaml(v));
  else throw new UsageError(`unknown output format '${format}'`, 'use -o json or -o yaml');
}

/** One document per value: JSON texts one after another, or a YAML stream ('---' before each). */
export function printEach(vs: readonly unknown[], format: OutputFormat | string): void {
  for (const v of vs) {
    if (format === 'yaml') process.stdout.write('---\n');
    printStructured(v, format);
  }
}
