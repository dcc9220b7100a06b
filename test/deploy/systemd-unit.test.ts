// The shipped systemd unit supervises the agent as the lab's supervisor does: restarted on failure
// (a crash, kill -9, a refused start), with a growing delay, never given up; and systemd itself
// accepts the file (keys older systemd does not know are the backoff's, and only those).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_NODE_OPTIONS } from '../../src/agent/agent-heap.js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
  assert.equal(keys.get('Environment'), `"NODE_OPTIONS=${AGENT_NODE_OPTIONS}"`, 'node flagged as the lab and the DaemonSet flag it (agent-heap.ts), quoted: the value has a space');
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
