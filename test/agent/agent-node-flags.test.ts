// The flags every launcher gives the agent's node: accepted both ways (argv: the lab's supervisor;
// NODE_OPTIONS, which refuses some flags: the systemd unit and the DaemonSet), without a warning,
// and where transparent huge pages are not off, how much of node's text landed on huge pages is
// reported (not asserted: the kernel backs the copy with 4 KiB pages when no 2 MiB page is free,
// which a busy machine may not have; the flag's effect is the bench's to show).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AGENT_NODE_FLAGS, AGENT_NODE_OPTIONS } from '../../src/agent/agent-heap.js';

const PROBE = "process.stdout.write(/AnonHugePages:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1])";
const thpOff = /\[never\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));

for (const [how, args, env] of [['argv', [...AGENT_NODE_FLAGS], {}], ['NODE_OPTIONS', [], { NODE_OPTIONS: AGENT_NODE_OPTIONS }]] as const) {
  test(`node takes the agent's flags as ${how}`, (t) => {
    const r = spawnSync(process.execPath, [...args, '-e', PROBE], { env: { ...process.env, ...env }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'no warning');
    assert.match(r.stdout, /^\d+$/, 'the probe ran under the flags');
    t.diagnostic(thpOff ? 'transparent huge pages off here' : `AnonHugePages ${r.stdout} kB (node's text on 2 MiB pages when ≥ 2048)`);
  });
}
