// The lab's agent supervisor as systemd's Restart=on-failure: a child that dies is started again
// after a growing delay, and supervisor.json says how often and how it last died; a clean exit (0)
// ends the supervision; SIGTERM stops the child cleanly. Run in a child process of its own, with a
// shell script standing in for the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSupervisorState, restartDelayMs, RESTART_BASE_MS, RESTART_MAX_MS } from '../../src/lab/agent-supervisor.js';

const MODULE = resolve(fileURLToPath(import.meta.url), '../../../src/lab/agent-supervisor.js');

test('the restart delay doubles from the base to the cap', () => {
  assert.deepEqual([1, 2, 3, 4].map(restartDelayMs), [RESTART_BASE_MS, 2 * RESTART_BASE_MS, 4 * RESTART_BASE_MS, 8 * RESTART_BASE_MS]);
  assert.equal(restartDelayMs(40), RESTART_MAX_MS);
});

function supervise(home: string, script: string) {
  const dir = join(home, 'node');
  const src = `import { superviseAgent } from ${JSON.stringify(MODULE)};
process.exitCode = await superviseAgent({ cluster: 'tsup', node: 'n', nodeDir: ${JSON.stringify(dir)}, command: ['sh', '-c', ${JSON.stringify(script)}],
  logFile: ${JSON.stringify(join(dir, 'agent.log'))}, pidName: 'agent-n' });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', src], { env: { ...process.env, VEIL_HOME: home }, stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, dir };
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a dying child is restarted with backoff and its last words kept; SIGTERM stops it; a clean exit ends the supervision', async () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-t-sup-'));
  try {
    mkdirSync(join(home, 'node'));
    // dies three times, then runs until SIGTERM, which it answers with a clean exit
    const flag = join(home, 'runs');
    writeFileSync(flag, '');
    const script = `echo x >> ${flag}; n=$(wc -l < ${flag}); if [ "$n" -le 3 ]; then echo "refused: port taken ($n)"; exit 3; fi; trap 'exit 0' TERM; while :; do sleep 0.05; done`;
    const s = supervise(home, script);
    const st = await until('the fourth start', () => { const x = readSupervisorState(s.dir); return x?.state === 'running' && x.restarts === 3 && x; });
    assert.deepEqual({ code: st.lastExit?.code, signal: st.lastExit?.signal, lastLine: st.lastExit?.lastLine }, { code: 3, signal: null, lastLine: 'refused: port taken (3)' });
    const pid = st.agentPid!;
    process.kill(pid, 'SIGKILL'); // a kill -9: restarted again
    await until('the restart after kill -9', () => { const x = readSupervisorState(s.dir); return x?.state === 'running' && x.restarts === 4 && x.lastExit?.signal === 'SIGKILL' && x.agentPid !== pid; });
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
    assert.equal(readSupervisorState(s.dir)?.state, 'stopped');
    // a clean exit of the child ends the supervision (Restart=on-failure)
    const clean = supervise(home, 'exit 0');
    assert.equal(await clean.exited, 0);
    const done = readSupervisorState(clean.dir)!;
    assert.deepEqual({ state: done.state, restarts: done.restarts, code: done.lastExit?.code }, { state: 'stopped', restarts: 0, code: 0 });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
