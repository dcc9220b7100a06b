// The CLI's one flag layer. Every command declares only its own flags, its usage and examples; the
// common flags (--cluster, -o/--output, -h/--help), parsing, checking and the help text are here.
// Built on node:util parseArgs, which every command already parsed with: its grammar (--flag=value,
// -ovalue, repeated flags, '--') stays exactly as it was, and it needs no dependency. What parseArgs
// lacks (enums, "did you mean", help text, exit code 2) is this file.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { VeilError } from '../util/errors.js';
import { nearest } from '../util/nearest.js';

/** Bad usage (unknown flag or subcommand, missing value, value not allowed): main exits with 2. */
export class UsageError extends VeilError {
  constructor(message: string, hint?: string, code = 'BAD_USAGE') {
    super(code, message, hint);
    this.name = 'UsageError';
  }
}

/** Runs the parse of a flag's value (a duration, a --set key=value): its VeilError is bad usage. */
export function flagValue<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw e instanceof VeilError && !(e instanceof UsageError) ? new UsageError(e.message, e.hint, e.code) : e;
  }
}

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  readonly default?: string | boolean;
  /** The allowed values; one ending in '=' allows any value with that prefix (go-template=...). */
  readonly choices?: readonly string[];
  /** The value's name in the help text, e.g. NAME. */
  readonly value?: string;
  readonly help: string;
}

type FlagSpecs = Readonly<Record<string, FlagSpec>>;
type FlagValue<S extends FlagSpec> = S['type'] extends 'boolean' ? boolean : S['multiple'] extends true ? string[] : string;
export type FlagValues<F extends FlagSpecs> = { -readonly [K in keyof F]?: FlagValue<F[K]> } & { cluster?: string; output?: string };

export interface Parsed<F extends FlagSpecs> {
  values: FlagValues<F>;
  positionals: string[];
  /** With passThrough: the words after '--' (undefined when there is no '--'). */
  rest?: string[];
}

export interface CommandSpec<F extends FlagSpecs> {
  /** As typed, e.g. 'veil secret get'. */
  name: string;
  /** One line in its group's help. */
  summary?: string;
  /** Synopsis lines, without 'Usage: '. */
  usage: readonly string[];
  about?: string;
  flags?: F;
  /** Takes --cluster NAME (default true). */
  cluster?: boolean;
  /** Takes -o/--output FORMAT with these formats. */
  output?: { choices: readonly string[]; default?: string; help?: string };
  positionals?: boolean;
  /** Stop parsing at '--' and hand the words after it over as `rest` (lab exec). */
  passThrough?: boolean;
  /** Extra help paragraphs (exit codes, ...), before the examples. */
  notes?: string;
  examples: readonly string[];
  run(p: Parsed<F>): Promise<number> | number;
}

/** A command or a group of commands, as main.ts and groups run them. */
export interface Runnable {
  summary?: string;
  hidden?: boolean;
  run(args: string[]): Promise<number>;
}

const CLUSTER_FLAG: FlagSpec = { type: 'string', value: 'NAME', help: 'the cluster (default: the current one)' };
const HELP_FLAG: FlagSpec = { type: 'boolean', short: 'h', help: 'this help' };

function outputFlag(o: NonNullable<CommandSpec<FlagSpecs>['output']>): FlagSpec {
  const shown = o.choices.map((c) => (c.endsWith('=') ? `${c}...` : c));
  return { type: 'string', short: 'o', value: 'FORMAT', default: o.default, choices: o.choices, help: o.help ?? orList(shown) };
}

function orList(words: readonly string[]): string {
  return words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

/** The command's flags: its own, then the common ones it takes. */
function allFlags(spec: CommandSpec<FlagSpecs>): Record<string, FlagSpec> {
  return {
    ...spec.flags,
    ...(spec.output ? { output: outputFlag(spec.output) } : {}),
    ...(spec.cluster === false ? {} : { cluster: CLUSTER_FLAG }),
    help: HELP_FLAG,
  };
}

function flagLabel(name: string, f: FlagSpec): string {
  const value = f.type === 'string' ? ` ${f.value ?? (f.choices ? f.choices.join('|') : 'VALUE')}` : '';
  return `${f.short ? `-${f.short}, ` : ''}--${name}${value}`;
}

export function helpText(spec: CommandSpec<FlagSpecs>): string {
  const lines = spec.usage.map((u, i) => `${i ? '       ' : 'Usage: '}${u}`);
  if (spec.about) lines.push('', spec.about);
  const flags = Object.entries(allFlags(spec)).filter(([name]) => name !== 'help');
  if (flags.length) {
    const labels = flags.map(([name, f]) => flagLabel(name, f));
    const w = Math.max(...labels.map((l) => l.length)) + 2;
    lines.push('', 'Flags:', ...flags.map(([, f], i) => `  ${labels[i]!.padEnd(w)}${f.help}`));
  }
  if (spec.notes) lines.push('', spec.notes);
  if (spec.examples.length) lines.push('', spec.examples.length > 1 ? 'Examples:' : 'Example:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}

function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/** parseArgs' errors, said as veil says usage errors: what is wrong, and the nearest flag. */
function usageErrorOf(e: unknown, name: string, flags: Record<string, FlagSpec>): UsageError | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (!(e instanceof TypeError) || !code?.startsWith('ERR_PARSE_ARGS')) return undefined;
  const help = `run '${name} -h' for usage`;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'([^']+)'/.exec(e.message)?.[1] ?? e.message;
    const near = flag.startsWith('--') ? nearest(flag.slice(2), Object.keys(flags), Math.max(2, Math.floor(flag.length / 3))) : undefined;
    return new UsageError(`unknown flag '${flag}'`, near ? `did you mean --${near}? (${help})` : help);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return new UsageError(`unexpected argument '${/'([^']+)'/.exec(e.message)?.[1] ?? e.message}'`, help);
  }
  const bad = /^Option '(.+?)(?: <value>)?' (argument missing|argument is ambiguous|does not take an argument)/.exec(e.message);
  if (bad?.[2] === 'argument missing') return new UsageError(`${bad[1]} needs a value`, help);
  if (bad?.[2] === 'argument is ambiguous') return new UsageError(`${bad[1]} needs a value`, `a value starting with '-' goes as ${bad[1].split(', ').pop()}=-VALUE (${help})`);
  if (bad) return new UsageError(`${bad[1]} takes no value`, help);
  return new UsageError(e.message.split('\n')[0]!.replace(/\.$/, ''), help);
}

function checkChoice(name: string, f: FlagSpec, v: string, cmd: string): void {
  const choices = f.choices!;
  if (choices.some((c) => (c.endsWith('=') ? v.startsWith(c) || v === c.slice(0, -1) : v === c))) return;
  const flag = name === 'output' ? '-o' : `--${name}`;
  const near = nearest(v, choices.map((c) => c.replace(/=$/, '')), Math.max(1, Math.min(2, Math.floor(v.length / 3))));
  const shown = choices.map((c) => (c.endsWith('=') ? `${c}...` : c));
  const hint = near ? `did you mean ${flag} ${near}?` : `use ${flag} ${orList(shown)} (run '${cmd} -h')`;
  throw new UsageError(name === 'output' ? `unknown output format '${v}'` : `${flag} must be ${orList(shown)}, not '${v}'`, hint);
}

/** A command: its flags parsed and checked, -h answered with its help. */
export function command<const F extends FlagSpecs>(spec: CommandSpec<F>): Runnable {
  const flags = allFlags(spec as CommandSpec<FlagSpecs>);
  // parseArgs refuses keys present as undefined
  const options = Object.fromEntries(Object.entries(flags).map(([name, { type, multiple, short, default: d }]) => [name, Object.fromEntries(
    Object.entries({ type, multiple, short, default: d }).filter(([, v]) => v !== undefined),
  )])) as unknown as ParseArgsConfig['options'];
  return {
    summary: spec.summary,
    async run(args) {
      if (wantsHelp(args)) {
        console.log(helpText(spec as CommandSpec<FlagSpecs>));
        return 0;
      }
      const sep = spec.passThrough ? args.indexOf('--') : -1;
      let parsed;
      try {
        parsed = parseArgs({ args: sep < 0 ? args : args.slice(0, sep), options, strict: true, allowPositionals: spec.positionals === true });
      } catch (e) {
        throw usageErrorOf(e, spec.name, flags) ?? e;
      }
      const values = parsed.values as Record<string, unknown>;
      for (const [name, f] of Object.entries(flags)) {
        const v = values[name];
        if (f.choices && typeof v === 'string') checkChoice(name, f, v, spec.name);
      }
      return spec.run({
        values: values as FlagValues<F>, positionals: parsed.positionals,
        rest: sep < 0 ? undefined : args.slice(sep + 1),
      });
    },
  };
}

export interface GroupSpec {
  /** As typed, e.g. 'veil lab'. */
  name: string;
  summary?: string;
  /** The first line of its help. */
  about?: string;
  commands: Record<string, Runnable>;
  /** Other names of a command: alias -> command. */
  aliases?: Record<string, string>;
  examples?: readonly string[];
}

export function groupHelp(g: GroupSpec): string {
  const names = Object.keys(g.commands).filter((n) => !g.commands[n]!.hidden);
  const rows: [string, string][] = [
    ...names.map((n): [string, string] => [n, g.commands[n]!.summary ?? '']),
    ...Object.entries(g.aliases ?? {}).map(([a, c]): [string, string] => [a, `alias of ${c}`]),
  ];
  const w = Math.max(...rows.map(([n]) => n.length)) + 2;
  const lines = [
    ...(g.about ? [g.about, ''] : []),
    `Usage: ${g.name} <command> [flags]`, '', 'Commands:', ...rows.map(([n, s]) => `  ${n.padEnd(w)}${s}`),
  ];
  if (g.examples?.length) lines.push('', 'Examples:', ...g.examples.map((e) => `  ${e}`));
  lines.push('', `Run '${g.name} <command> -h' for its flags and examples.`);
  return lines.join('\n');
}

/** A group of subcommands: the first word picks one, -h (or no word) prints the list. */
export function group(g: GroupSpec): Runnable {
  return {
    summary: g.summary,
    async run(args) {
      const [sub, ...rest] = args;
      if (!sub || sub === '-h' || sub === '--help' || sub === 'help') {
        console.log(groupHelp(g));
        return sub ? 0 : 2;
      }
      const cmd = g.commands[g.aliases?.[sub] ?? sub];
      if (!cmd) {
        const known = Object.keys(g.commands).filter((n) => !g.commands[n]!.hidden);
        const near = nearest(sub, known, 2);
        throw new UsageError(`unknown command '${g.name.replace(/^veil /, '')} ${sub}'`,
          near ? `did you mean '${g.name} ${near}'? (run '${g.name} -h')` : `use ${orList(known)} (run '${g.name} -h')`);
      }
      return cmd.run(rest);
    },
  };
}
