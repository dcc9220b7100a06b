// The lab's agent supervisor as systemd's Restart=on-failure: a child that dies is started again
// after a growing delay, and supervisor.json says how often and how it last died; a clean exit (0)
// ends the supervision; SIGTERM stops the child cleanly. Run in a child process of its own, with a
// shell script standing in for the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSupervisorState, restartDelayMs, RESTART_BASE_MS, RESTART_MAX_MS } from '../../src/lab/agent-supervisor.js';
import { waitFor } from '../wait-for.js';

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


test('a dying child is restarted with backoff and its last words kept; SIGTERM stops it; a clean exit ends the supervision', async () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-t-sup-'));
  try {
    mkdirSync(join(home, 'node'));
    // dies three times, then runs until SIGTERM, which it answers with a clean exit
    const flag = join(home, 'runs');
    writeFileSync(flag, '');
    const script = `echo x >> ${flag}; n=$(wc -l < ${flag}); if [ "$n" -le 3 ]; then echo "refused: port taken ($n)"; exit 3; fi; trap 'exit 0' TERM; while :; do sleep 0.05; done`;
    const s = supervise(home, script);
    const st = await waitFor('the fourth start', () => { const x = readSupervisorState(s.dir); return x?.state === 'running' && x.restarts === 3 && x; }, 10_000, { everyMs: 50 });
    assert.deepEqual({ code: st.lastExit?.code, signal: st.lastExit?.signal, lastLine: st.lastExit?.lastLine }, { code: 3, signal: null, lastLine: 'refused: port taken (3)' });
    const pid = st.agentPid!;
    process.kill(pid, 'SIGKILL'); // a kill -9: restarted again
    await waitFor('the restart after kill -9', () => { const x = readSupervisorState(s.dir); return x?.state === 'running' && x.restarts === 4 && x.lastExit?.signal === 'SIGKILL' && x.agentPid !== pid; }, 10_000, { everyMs: 50 });
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

const ADDON = resolve(fileURLToPath(import.meta.url), '../../../src/native/addon.js');

test('the fd store (systemd\'s protocol): fds stored on the way out come back to the next start as LISTEN_FDS, once; SIGHUP restarts at once; stored fds wait for a start after a clean exit', async () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-t-sup-'));
  let s: ReturnType<typeof supervise> | undefined;
  try {
    mkdirSync(join(home, 'node'));
    const seen = join(home, 'seen');
    writeFileSync(seen, '');
    // Each start writes what it was handed (LISTEN_* and the content of fd 3) and, on SIGTERM, stores
    // a memfd saying which start it was, then exits cleanly: what an agent's datapath handover does.
    const agent = join(home, 'agent.mjs');
    writeFileSync(agent, `import { native } from ${JSON.stringify(ADDON)};
import { appendFileSync, readFileSync, writeSync, closeSync } from 'node:fs';
const e = process.env, n = native();
const got = e.LISTEN_FDS ? readFileSync('/proc/self/fd/3', 'utf8') : '-'; // from the start: the offset is shared
process.on('SIGTERM', () => {
  const fd = n.memfdCreate('t');
  writeSync(fd, 'from ' + process.pid);
  n.sendFds(e.NOTIFY_SOCKET, Buffer.from('FDSTORE=1\\nFDNAME=veil-datapath\\n'), Int32Array.of(fd));
  closeSync(fd);
  process.exit(0);
});
// written once the handler is in place: the test stops this start as soon as it reads the line
appendFileSync(${JSON.stringify(seen)}, JSON.stringify({ fds: e.LISTEN_FDS ?? null, names: e.LISTEN_FDNAMES ?? null, pidOk: e.LISTEN_PID === String(process.pid), got }) + '\\n');
setInterval(() => undefined, 1000);`);
    s = supervise(home, `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(agent)}`);
    const lines = () => readFileSync(seen, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { fds: string | null; names: string | null; pidOk: boolean; got: string });
    const sup = s;
    const first = await waitFor('the first start', () => { const x = readSupervisorState(sup.dir); return x?.state === 'running' && lines().length === 1 && x; }, 10_000, { everyMs: 50 });
    assert.deepEqual(lines()[0], { fds: null, names: null, pidOk: false, got: '-' }, 'nothing stored yet');
    process.kill(sup.child.pid!, 'SIGHUP'); // veil agent restart
    await waitFor('the restart with the stored fd', () => lines().length === 2, 10_000, { everyMs: 50 });
    assert.deepEqual(lines()[1], { fds: '1', names: 'veil-datapath', pidOk: true, got: `from ${first.agentPid}` });
    const second = await waitFor('the second agent', () => { const x = readSupervisorState(sup.dir); return x?.state === 'running' && x.agentPid !== first.agentPid && x; }, 10_000, { everyMs: 50 });
    assert.equal(second.restarts, 0, 'a restart asked for is not a failure');
    // SIGTERM to the agent itself: a clean exit with fds stored: the supervisor keeps them for a start.
    process.kill(second.agentPid!, 'SIGTERM');
    const waiting = await waitFor('the stored fds to wait', () => { const x = readSupervisorState(sup.dir); return x?.state === 'stopped' && x.storedFds === 1 && x; }, 10_000, { everyMs: 50 });
    assert.equal(waiting.lastExit?.code, 0);
    process.kill(sup.child.pid!, 'SIGHUP'); // a start
    await waitFor('the start with the fd stored by the second agent', () => lines().length === 3, 10_000, { everyMs: 50 });
    assert.equal(lines()[2]!.got, `from ${second.agentPid}`, 'each stored fd is handed over once, to the next start');
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  } finally {
    s?.child.kill('SIGTERM'); // after a failure too: it stops its agent
    rmSync(home, { recursive: true, force: true });
  }
});
