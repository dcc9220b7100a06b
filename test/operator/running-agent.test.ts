// Whether a node's agent runs: a lab knows the processes of the agents it runs; a host's agent runs while its lease lives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runningAgentPid } from '../../src/operator/observe.js';
import type { RegistryObject } from '../../src/control/registry.js';

const lease = (pid: unknown): RegistryObject => ({ kind: 'Lease', metadata: { name: 'host-a' }, spec: { pid, bootID: 'b', ttlSeconds: 15 } });

test('on hosts (no lab): the live lease names the running agent', () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-t-running-'));
  const saved = process.env['VEIL_HOME'];
  process.env['VEIL_HOME'] = home;
  try {
    assert.equal(runningAgentPid('prod', 'host-a', lease(4242)), 4242);
    assert.equal(runningAgentPid('prod', 'host-a', undefined), undefined, 'no lease: not running');
    assert.equal(runningAgentPid('prod', 'host-a', lease('4242')), undefined, 'a malformed lease names no process');
    // a lab cluster asks its pid records for the agents it runs: one recorded, gone, is not running whatever the lease says
    mkdirSync(join(home, 'clusters', 'labby', 'pids'), { recursive: true });
    writeFileSync(join(home, 'clusters', 'labby', 'lab.json'), '{}');
    writeFileSync(join(home, 'clusters', 'labby', 'pids', 'supervisor-host-a.pid'), JSON.stringify({ name: 'supervisor-host-a', pid: 999999999, startTime: '1' }));
    assert.equal(runningAgentPid('labby', 'host-a', lease(process.pid)), undefined);
    // an agent the lab does not run (started by hand from its config in a lab node) is a host's: its lease says
    assert.equal(runningAgentPid('labby', 'host-b', lease(4343)), 4343);
  } finally {
    if (saved === undefined) delete process.env['VEIL_HOME']; else process.env['VEIL_HOME'] = saved;
    rmSync(home, { recursive: true, force: true });
  }
});
