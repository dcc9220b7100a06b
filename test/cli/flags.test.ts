// The CLI's flag layer, through the real `veil` binary: help with examples for every command, and
// bad usage (unknown flag or command, missing value, value not allowed) said clearly with exit 2.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { command } from '../../src/cli/flags.js';
import { isVeilError } from '../../src/util/errors.js';

const home = mkdtempSync(join(tmpdir(), 'veil-t-flags-'));
after(() => rmSync(home, { recursive: true, force: true }));
const env = { ...process.env, VEIL_HOME: home, VEIL_CLUSTER: 'tflags' };
const veil = (...args: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', env });

interface Ran { args: string[]; status: number | null; stdout: string; stderr: string }
/** Each argument list through the real binary, four at a time (a hundred process starts one by one cost a minute of CI). */
async function veilEach(argLists: string[][]): Promise<Ran[]> {
  const out: Ran[] = new Array(argLists.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < argLists.length; i = next++) {
      const args = argLists[i]!;
      out[i] = await new Promise<Ran>((resolve) => {
        const child = execFile(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', env }, (_e, stdout, stderr) =>
          resolve({ args, status: child.exitCode, stdout, stderr }));
      });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return out;
}

const COMMANDS = [
  'demo', 'lab up', 'lab down', 'lab get', 'lab pod', 'lab exec', 'lab node-exec', 'secret create', 'secret get', 'secret patch',
  'secret delete', 'install', 'uninstall', 'config view', 'config keys', 'agent status', 'agent encrypt status', 'agent logs',
  'agent restart', 'agent run', 'ipsec state', 'ipsec policy', 'ipsec sa-export', 'status', 'encryption status',
  'encryption create-key', 'encryption rotate-key', 'encryption key-status', 'encryption ks', 'verify', 'capture', 'metrics',
  'cluster list', 'cluster use', 'cluster add',
];

test('every command prints its help with examples on -h and --help, exit 0', async () => {
  for (const r of await veilEach(COMMANDS.flatMap((c) => [[...c.split(' '), '-h'], [...c.split(' '), '--help']]))) {
    const c = r.args.slice(0, -1).join(' ');
    assert.equal(r.status, 0, `${r.args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: veil ${c.replace(' ks', ' key-status')}`), c);
    assert.match(r.stdout, /\nExamples?:\n {2}\S/, c);
  }
  // help wins over a bad flag, and help before '--' only
  assert.equal(veil('status', '--bogus', '-h').status, 0);
  const s = veil('status', '-h').stdout;
  assert.match(s, /^ {2}--cluster NAME +the cluster \(default: the current one\)$/m);
  assert.match(s, /^ {2}-o, --output FORMAT +json or yaml/m);
});

test('groups list their commands; no command is bad usage, -h is not', () => {
  for (const g of ['lab', 'cluster', 'secret', 'config', 'agent', 'ipsec', 'encryption']) {
    const bare = veil(g);
    assert.equal(bare.status, 2, g);
    assert.match(bare.stdout, /Commands:\n/);
    assert.equal(veil(g, '-h').status, 0, g);
  }
  assert.doesNotMatch(veil('agent', '-h').stdout, /\bpid\b/, 'internal command not listed');
  assert.match(veil('encryption', '-h').stdout, /^ {2}ks +alias of key-status$/m);
});

test('bad usage: a clear message, the nearest flag, command or value, and exit 2', async () => {
  const cases: [string[], RegExp][] = [
    [['status', '--clustr', 'x'], /^veil status: unknown flag '--clustr': did you mean --cluster\? \(run 'veil status -h' for usage\)\n$/],
    [['secret', 'get', 'k', '--outptu', 'json'], /unknown flag '--outptu': did you mean --output\?/],
    [['status', '--bogus'], /^veil status: unknown flag '--bogus': run 'veil status -h' for usage\n$/],
    [['status', '-o'], /^veil status: -o, --output needs a value/],
    [['metrics', 'n', '--grep', '-x'], /--grep needs a value: a value starting with '-' goes as --grep=-VALUE/],
    [['status', '--wait=yes'], /--wait takes no value/],
    [['status', 'extra'], /unexpected argument 'extra'/],
    [['status', '-o', 'jsn'], /unknown output format 'jsn': did you mean -o json\?/],
    [['verify', '-o', 'table'], /unknown output format 'table': use -o json or yaml/],
    [['secret', 'get', 'k', '-o', 'table'], /use -o json, yaml, name or go-template=\.\.\./],
    [['capture', 'n', '--iface', 'tunel'], /--iface must be underlay or tunnel, not 'tunel': did you mean --iface tunnel\?/],
    [['install', '--encryption', 'wireguards'], /did you mean --encryption wireguard\?/],
    [['install', '--set', 'encryption.tpye=ipsec'], /unknown setting "encryption.tpye": did you mean "encryption.type"\?/],
    [['status', '--wait-duration', '5x'], /invalid duration "5x"/],
    [['encryption', 'create-key', '-o', 'json'], /unknown flag '-o'/],
    [['encryption', 'create-key', '--auth-algo', 'bad'], /unsupported --auth-algo "bad"/],
    [['secret', 'gett', 'k'], /unknown command 'secret gett': did you mean 'veil secret get'\?/],
    [['agent', 'encrypt', 'foo'], /unknown command 'agent encrypt foo'/],
    [['ipsec', 'state'], /which node\?/],
    [['lab', 'exec', 'pod'], /no command given: put it after '--'/],
    [['lab', 'up', '--nodes', 'x'], /--nodes must be a whole number, not 'x'/],
    [['stauts'], /unknown command 'stauts'\. Did you mean 'veil status'\?/],
    [['cluster', 'add', 'x'], /cluster add needs --etcd-endpoints/],
    [['cluster', 'add', 'x', '--etcd-endpoint', 'http://a:2379'], /unknown flag '--etcd-endpoint': did you mean --etcd-endpoints\?/],
    [['cluster', 'add', 'x', '--embedded'], /unknown flag '--embedded'/],
    [['agent', 'run', '--pod-cidrs', '10.0.0.0/24'], /unknown flag '--pod-cidrs': did you mean --pod-cidr\?/],
    [['lab', 'up', '--etcd-members', 'x'], /--etcd-members must be a whole number, not 'x'/],
  ];
  const ran = await veilEach(cases.map(([args]) => args));
  for (const [i, [args, message]] of cases.entries()) {
    const r = ran[i]!;
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
  }
});

test('flags parse as parseArgs does: --flag=value, -ovalue, repeated flags, defaults, and the words after --', async () => {
  const seen: unknown[] = [];
  const c = command({
    name: 'veil t', usage: ['veil t'], examples: [], positionals: true, passThrough: true,
    flags: { set: { type: 'string', multiple: true, help: '' }, wait: { type: 'string', default: '2m', help: '' }, f: { type: 'boolean', short: 'f', help: '' } },
    output: { choices: ['json', 'yaml', 'go-template='] },
    run: (p) => { seen.push(p); return 0; },
  });
  assert.equal(await c.run(['a', '--set=x=1', '--set', 'y=2', '-f', '-oyaml', '--cluster=c1', '--', 'ping', '-h', '--bogus']), 0);
  assert.equal(await c.run(['-o', 'go-template={{.x}}']), 0);
  assert.deepEqual(JSON.parse(JSON.stringify(seen)), [
    { values: { set: ['x=1', 'y=2'], f: true, output: 'yaml', cluster: 'c1', wait: '2m' }, positionals: ['a'], rest: ['ping', '-h', '--bogus'] },
    { values: { output: 'go-template={{.x}}', wait: '2m' }, positionals: [] },
  ]);
  await assert.rejects(c.run(['-o', 'go-templat']), (e) => isVeilError(e) && e.code === 'BAD_USAGE' && /did you mean -o go-template\?/.test(e.describe()));
});
