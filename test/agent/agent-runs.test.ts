// A host agent's record of its runs (runs.json in its state dir): a start after a failed or
// unrecorded end is a restart, a clean stop is not; systemd's ExecStopPost environment is read as
// systemd.exec(5) documents it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentRunsPath, describeExit, exitFailed, exitFromSystemdEnv, readAgentRuns, recordAgentExit, recordAgentStart } from '../../src/agent/agent-runs.js';

test('runs: restarts count the starts after a failed or unrecorded end, not after a clean stop', () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-runs-'));
  try {
    assert.equal(readAgentRuns(dir), undefined);
    assert.equal(recordAgentStart(dir, 100).restarts, 0, 'the first start');
    assert.equal(statSync(agentRunsPath(dir)).mode & 0o777, 0o600);
    // killed where nothing recorded its end (kill -9 without ExecStopPost)
    const r1 = recordAgentStart(dir, 101);
    assert.equal(r1.restarts, 1);
    assert.equal(r1.lastExit?.result, 'unrecorded');
    assert.match(describeExit(r1.lastExit!), /ended without a record/);
    // a clean stop (SIGTERM, exit 0) and a start: no restart
    recordAgentExit(dir, { code: 0, signal: null, at: new Date().toISOString() });
    assert.equal(readAgentRuns(dir)?.running, false);
    assert.equal(recordAgentStart(dir, 102).restarts, 1);
    // systemd's view of a kill -9, then the restart
    recordAgentExit(dir, exitFromSystemdEnv({ SERVICE_RESULT: 'signal', EXIT_CODE: 'killed', EXIT_STATUS: 'KILL' })!);
    const r3 = recordAgentStart(dir, 103);
    assert.equal(r3.restarts, 2);
    assert.equal(r3.lastExit?.signal, 'SIGKILL');
    assert.equal(r3.pid, 103);
    // a refused start (exit 1), recorded by the agent with its reason
    recordAgentExit(dir, { code: 1, signal: null, at: new Date().toISOString(), reason: 'UDP port 4500 is in use' });
    const r4 = recordAgentStart(dir, 104);
    assert.equal(r4.restarts, 3);
    assert.equal(r4.lastExit?.reason, 'UDP port 4500 is in use');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("runs: systemd's ExecStopPost environment", () => {
  assert.deepEqual({ ...exitFromSystemdEnv({ SERVICE_RESULT: 'signal', EXIT_CODE: 'killed', EXIT_STATUS: 'KILL' }), at: '' }, { code: null, signal: 'SIGKILL', at: '', result: 'signal' });
  assert.deepEqual({ ...exitFromSystemdEnv({ SERVICE_RESULT: 'core-dump', EXIT_CODE: 'dumped', EXIT_STATUS: 'SEGV' }), at: '' }, { code: null, signal: 'SIGSEGV', at: '', result: 'core-dump' });
  const refused = exitFromSystemdEnv({ SERVICE_RESULT: 'exit-code', EXIT_CODE: 'exited', EXIT_STATUS: '1' })!;
  assert.equal(refused.code, 1);
  assert.equal(exitFailed(refused), true);
  const clean = exitFromSystemdEnv({ SERVICE_RESULT: 'success', EXIT_CODE: 'exited', EXIT_STATUS: '0' })!;
  assert.equal(exitFailed(clean), false);
  assert.equal(exitFailed({ ...clean, result: 'timeout' }), true, 'a stop that timed out is a failure even when the process exited 0');
  assert.equal(exitFromSystemdEnv({}), undefined, 'not run by systemd');
  assert.equal(describeExit({ code: null, signal: 'SIGKILL', at: '' }), 'was killed by SIGKILL');
  assert.equal(describeExit({ code: 1, signal: null, at: '' }), 'exited with status 1');
});
