// Reading /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat lines (proc(5)). Field 2, the command
// name in parentheses, may itself hold spaces and ')' (a thread may name itself anything), so the
// fields are counted from after its last ')'.
import { readFileSync } from 'node:fs';

/** Field `n` of a stat line, numbered from 1 as proc(5) numbers them (3 = state, 22 = starttime); n ≥ 3. */
export function statField(stat: string, n: number): string {
  if (!Number.isInteger(n) || n < 3) throw new RangeError(`stat field ${n}: only fields from 3 on follow the command name`);
  const close = stat.lastIndexOf(')');
  if (close < 0) throw new RangeError('not a /proc stat line: no command name in parentheses');
  const field = stat.slice(close + 2).split(' ')[n - 3];
  if (field === undefined) throw new RangeError(`stat line has no field ${n}`);
  return field;
}

/** Field `n` of the stat file at `path`, or undefined when the process or thread is gone. */
export function readStatField(path: string, n: number): string | undefined {
  let stat: string;
  try { stat = readFileSync(path, 'utf8'); } catch { return undefined; }
  return statField(stat, n);
}
