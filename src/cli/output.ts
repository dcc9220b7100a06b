// -o json|yaml for every read command.
import { VeilError } from '../util/errors.js';
import { toYaml } from '../control/yaml.js';

export type OutputFormat = 'json' | 'yaml';

export function printStructured(v: unknown, format: OutputFormat | string): void {
  if (format === 'json') process.stdout.write(JSON.stringify(v, null, 2) + '\n');
  else if (format === 'yaml') process.stdout.write(toYaml(v));
  else throw new VeilError('BAD_OUTPUT', `unknown output format "${format}"`, 'use -o json or -o yaml');
}
