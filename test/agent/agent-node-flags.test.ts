// The flags every launcher gives the agent's node on its command line (the lab's supervisor, the
// systemd unit, the DaemonSet): accepted without a warning; NODE_OPTIONS would refuse one of them,
// and where transparent huge pages are not off, how much of node's text landed on huge pages is
// reported (not asserted: the kernel backs the copy with 4 KiB pages when no 2 MiB page is free,
// which a busy machine may not have; the flag's effect is the bench's to show).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AGENT_NODE_FLAGS } from '../../src/agent/agent-heap.js';

const PROBE = "process.stdout.write(/AnonHugePages:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1])";
const thpOff = /\[never\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));

test("node takes the agent's flags on its command line", (t) => {
  const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', PROBE], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warning');
  assert.match(r.stdout, /^\d+$/, 'the probe ran under the flags');
  t.diagnostic(thpOff ? 'transparent huge pages off here' : `AnonHugePages ${r.stdout} kB (node's text on 2 MiB pages when ≥ 2048)`);
});

test('NODE_OPTIONS refuses --no-memory-reducer, which is why every launcher uses the command line', () => {
  const r = spawnSync(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: AGENT_NODE_FLAGS.join(' ') }, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--no-memory-reducer is not allowed in NODE_OPTIONS/);
});
