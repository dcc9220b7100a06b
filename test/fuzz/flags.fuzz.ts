// CLI flags: any words after a command, through the one flag layer every veil command uses
// (src/cli/flags.ts over node:util parseArgs) with a spec of every flag shape (string, boolean,
// repeated, choices with a prefix choice, short forms, positionals, '--' pass-through). The
// command runs with values of the declared types and allowed choices, or a UsageError (exit 2)
// says what is wrong; nothing else.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { command, group, UsageError } from '../../src/cli/flags.js';
import { expectClearError, harness } from './harness.js';

interface Ran { values: Record<string, unknown>; positionals: string[]; rest?: string[] }
let ran: Ran | undefined;

const spec = command({
  name: 'veil fuzz run', usage: ['veil fuzz run [flags] [NAME...] [-- CMD]'], examples: ['veil fuzz run --node a'],
  positionals: true, passThrough: true,
  output: { choices: ['table', 'json', 'yaml', 'go-template='], default: 'table' },
  flags: {
    node: { type: 'string', short: 'n', value: 'NODE', help: 'a node' },
    set: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'settings' },
    wireguard: { type: 'boolean', help: 'WireGuard' },
    mode: { type: 'string', choices: ['ipsec', 'wireguard'], help: 'mode' },
    wait: { type: 'boolean', short: 'w', default: false, help: 'wait' },
  },
  run: (p) => { ran = { values: p.values as Record<string, unknown>, positionals: p.positionals, rest: p.rest }; return 0; },
});
const tree = group({ name: 'veil fuzz', commands: { run: spec }, aliases: { r: 'run' } });

const WORDS = ['--node', '-n', '--node=', '--set', 'a=b', '--wireguard', '--wireguard=true', '--mode', 'ipsec', 'wireguard', 'ipsek', '-o', 'json', '-ojson',
  '--output=go-template={{.x}}', '--output', 'xml', '-w', '-wn', '--wait', '--cluster', 'prod', '--', '-', '---', '--nod', '-x', '--help', '-h', 'NAME', '', '=', '--=x', '-nw'];

const seen = { ran: 0, refused: 0, help: 0 };

export const cliFlags = harness({
  name: 'cli-flags',
  target: 'src/cli/flags.ts command()/group() on any argument words',
  runs: 300_000,
  ciRuns: 10_000,
  property: () => fc.asyncProperty(
    fc.oneof(fc.constant('run'), fc.constant('r'), fc.constantFrom('rn', '', 'help', '-h'), fc.string({ maxLength: 4 })),
    fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...WORDS) }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) }), { maxLength: 8 }),
    async (sub, words) => {
      ran = undefined;
      const log = console.log;
      let printed = '';
      console.log = (s: unknown) => { printed += String(s); };
      let err: unknown;
      try { await tree.run([sub, ...words]); } catch (e) { err = e; } finally { console.log = log; }
      if (err !== undefined) {
        expectClearError(err, ['BAD_USAGE'], 'the flag layer');
        assert.ok(err instanceof UsageError && (err.hint ?? '').length > 0, 'a usage error says what to do');
        assert.equal(ran, undefined, 'the command ran despite a usage error');
        seen.refused++;
        return;
      }
      if (!ran) { assert.ok(printed.length > 0, 'no run, no error: help was printed'); seen.help++; return; }
      seen.ran++;
      const done = ran as Ran;
      const v = done.values;
      for (const k of ['node', 'mode', 'output', 'cluster']) assert.ok(v[k] === undefined || typeof v[k] === 'string', k);
      for (const k of ['wireguard', 'wait']) assert.ok(v[k] === undefined || typeof v[k] === 'boolean', k);
      assert.ok(v['set'] === undefined || (Array.isArray(v['set']) && (v['set'] as unknown[]).every((x) => typeof x === 'string')));
      assert.ok(v['mode'] === undefined || ['ipsec', 'wireguard'].includes(v['mode'] as string), `--mode ${String(v['mode'])} passed the choices`);
      const out = v['output'] as string;
      assert.ok(['table', 'json', 'yaml'].includes(out) || out.startsWith('go-template='), `-o ${out} passed the choices`);
      const dashes = words.indexOf('--');
      assert.deepEqual(done.rest, dashes < 0 ? undefined : words.slice(dashes + 1));
    },
  ),
  report: () => `ran ${seen.ran}, usage errors ${seen.refused}, help ${seen.help}`,
});

export const harnesses = [cliFlags];
