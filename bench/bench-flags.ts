// The benches' flags: node's parseArgs, with an unknown or malformed flag answered by what is wrong
// and the usage (exit 2), and --help / -h by the usage (exit 0), as the CLI's flag layer does,
// instead of a stack trace.
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
const HELP_FLAG = { help: { type: 'boolean', short: 'h' } } as const;

type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O }>>['values'];

/** The flags' values (process.argv), or the process ends: after the usage on --help, after the error and the usage on a bad flag. */
export function benchFlags<O extends Options>(options: O, usage: string): Values<O> {
  let values: Values<O> & { help?: boolean };
  try {
    values = parseArgs({ options: { ...options, ...HELP_FLAG } }).values as Values<O> & { help?: boolean };
  } catch (e) {
    console.error(`bad option: ${e instanceof Error ? e.message : String(e)}\n\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  return values;
}
