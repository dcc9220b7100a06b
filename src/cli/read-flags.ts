// Checks shared by the read commands, done before any work so a typo fails fast.
import { VeilError } from '../util/errors.js';

export function checkOutputFormat(format: string | undefined, allowed: readonly string[] = ['json', 'yaml']): void {
  if (format !== undefined && !allowed.includes(format)) {
    throw new VeilError('BAD_OUTPUT', `unknown output format "${format}"`, `use -o ${allowed.join(' or -o ')}`);
  }
}
