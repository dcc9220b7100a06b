// veil secret: filled in by the foundation work.
import { VeilError } from '../util/errors.js';

export async function run(_args: string[]): Promise<number> {
  throw new VeilError('NOT_BUILT', 'veil secret is not built yet');
}
