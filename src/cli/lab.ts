// veil lab: filled in by the foundation work.
import { VeilError } from '../util/errors.js';

export async function run(_args: string[]): Promise<number> {
  throw new VeilError('NOT_BUILT', 'veil lab is not built yet');
}
