// The shipped systemd unit supervises the agent as the lab's supervisor does: restarted on failure
// (a crash, kill -9, a refused start), with a growing delay, never given up; and systemd itself
// accepts the file (keys older systemd does not know are the backoff's, and only those).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_NODE_FLAGS } from '../../src/agent/agent-heap.js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const UNIT = 'deploy/systemd/veil-agent.service';

test('the systemd unit restarts the agent on failure with a backoff and never gives up', () => {
  const text = readFileSync(UNIT, 'utf8');
  const keys = new Map(text.split('\n').filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(keys.get('Restart'), 'on-failure');
  assert.equal(keys.get('StartLimitIntervalSec'), '0', 'never left dead after a burst of failed starts');
  assert.equal(keys.get('RestartSec'), '1s');
  assert.equal(keys.get('RestartSteps'), '5');
  assert.equal(keys.get('RestartMaxDelaySec'), '30s');
  assert.equal(keys.get('KillSignal'), 'SIGTERM');
  const verify = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (verify.status !== 0) return; // no systemd here: the keys above are what can be checked
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-unit-'));
  try {
    copyFileSync(UNIT, join(dir, 'veil-agent.service'));
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'veil-agent.service')], { encoding: 'utf8' });
    const complaints = r.stderr.split('\n').filter((l) => l.trim() && !/Unknown key '(RestartSteps|RestartMaxDelaySec)'/.test(l));
    assert.deepEqual(complaints, [], r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the unit starts node with the agent flags on its command line, and that command line runs', () => {
  const text = readFileSync(UNIT, 'utf8');
  const execStart = text.split('\n').find((l) => l.startsWith('ExecStart='))!.slice('ExecStart='.length);
  const m = /^\/bin\/sh -c '([^']*)'$/.exec(execStart);
  assert.ok(m, `ExecStart is one sh -c script: ${execStart}`);
  const script = m![1]!.replace(/\$\$/g, '$'); // systemd's unescaping of $$
  const finding = 'veil=$(command -v veil) || { echo "veil is not on the PATH" >&2; exit 127; }; ';
  assert.equal(script, `${finding}exec node ${AGENT_NODE_FLAGS.join(' ')} "$veil" agent run --config /etc/veil/agent.yaml`, 'the flags of agent-heap.ts, as the lab and the DaemonSet pass them');
  assert.ok(!text.split('\n').some((l) => /^Environment=.*NODE_OPTIONS/.test(l)), 'not in NODE_OPTIONS, which refuses --no-memory-reducer');
  // The same script with --help added and an executable `veil` on the PATH that loads this build's
  // CLI: the shell finds veil, node takes every flag, and the CLI parses `agent run --config`.
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-unit-'));
  try {
    writeFileSync(join(dir, 'veil'), `import(${JSON.stringify(pathToFileURL(resolve('dist/src/cli/main.js')).href)});\n`, { mode: 0o755 });
    const r = spawnSync('/bin/sh', ['-c', `${script} --help`], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'no warning from node');
    assert.match(r.stdout, /^Usage: veil agent run/);
    // Without veil on the PATH the unit fails (and is restarted), saying why, as `env veil` did.
    const none = spawnSync('/bin/sh', ['-c', script], { env: { ...process.env, PATH: join(dir, 'nothing-here') }, encoding: 'utf8' });
    assert.equal(none.status, 127);
    assert.match(none.stderr, /veil is not on the PATH/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
