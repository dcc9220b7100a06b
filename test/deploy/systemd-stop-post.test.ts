// The unit's ExecStopPost= run as systemd runs it (its command line through sh, with the environment
// systemd.exec(5) documents), against a real etcd: after a kill -9 it marks the node not ready at
// once, saying how the agent ended, and the next start counts the restart; after a clean stop (a
// handover restart) it does nothing. `veil status`'s view of a host agent follows from that.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { readAgentRuns, recordAgentExit, recordAgentStart } from '../../src/agent/agent-runs.js';
import { agentStatusOf } from '../../src/agent/registry-node-source.js';
import { hostSupervision } from '../../src/operator/observe.js';
import { buildStatusReport } from '../../src/operator/cluster-status.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { clearSettings, writeSettings } from '../../src/agent/install-state.js';
import { etcdForTests } from '../control/etcd-helpers.js';
import type { RegistryObject } from '../../src/control/registry.js';

const MAIN = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');
const UNIT = 'deploy/systemd/veil-agent.service';
const t = etcdForTests({ members: 1 });

/** The unit's ExecStopPost= as sh runs it: systemd's $$ is a literal $; the config path is the test's. */
function stopPostLine(config: string): string {
  const line = readFileSync(UNIT, 'utf8').split('\n').find((l) => l.startsWith('ExecStopPost='));
  assert.ok(line, 'the unit has an ExecStopPost=');
  return line.slice('ExecStopPost='.length).replace(/\$\$/g, '$').replaceAll('/etc/veil/agent.yaml', config);
}

test("the unit's ExecStopPost marks a killed host agent's node not ready at once and records the restart; a clean stop is left alone", { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-stoppost-'));
  try {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'veil'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} "$@"\n`);
    chmodSync(join(bin, 'veil'), 0o755);
    const stateDir = join(dir, 'state');
    const config = join(dir, 'agent.yaml');
    writeFileSync(config, toYaml({ cluster: 'tstoppost', nodeName: 'host-a', etcd: { endpoints: t.etcd.endpoints }, stateDir, runDir: stateDir, podCIDRs: ['10.244.7.0/24'] }));
    const reg = t.registry('tstoppost');
    await writeSettings(reg, { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' });
    const started = new Date().toISOString();
    await reg.create({ kind: 'Node', metadata: { name: 'host-a' }, spec: { internalIP: '10.0.0.11', podCIDR: '10.244.7.0/24' },
      status: { agent: { ready: true, pid: 4242, bootID: 'b', startedAt: started, health: { state: 'Ok', problems: [] }, supervision: { restarts: 0, state: 'running' } } } });
    mkdirSync(stateDir, { mode: 0o700 });
    recordAgentStart(stateDir, 4242, new Date(started));
    const lease: RegistryObject = { kind: 'Lease', metadata: { name: 'host-a' }, spec: { pid: 4242, renewTime: new Date().toISOString() } };
    const stopPost = (env: Record<string, string>) => spawnSync('sh', ['-c', stopPostLine(config)], {
      encoding: 'utf8', env: { PATH: `${bin}:${process.env['PATH']}`, ...env }, timeout: 30_000 });

    // a clean stop (SIGTERM answered with exit 0; also a restart that hands the datapath over): nothing
    const rv = (await reg.get('Node', 'host-a'))!.metadata.resourceVersion;
    const clean = stopPost({ SERVICE_RESULT: 'success', EXIT_CODE: 'exited', EXIT_STATUS: '0' });
    assert.equal(clean.status, 0, clean.stderr);
    assert.equal(clean.stdout, '', 'the guard skips the command');
    assert.equal((await reg.get('Node', 'host-a'))!.metadata.resourceVersion, rv);

    // ready before: the status of a host agent whose lease lives
    const report = (obj: Parameters<typeof hostSupervision>[0]) => buildStatusReport({ cluster: 'tstoppost', version: '0', settings: { ...defaultSettings(), 'encryption.enabled': true },
      observations: [{ name: 'host-a', object: obj, lease, supervision: hostSupervision(obj, lease), ...(hostSupervision(obj, lease)?.state === 'running' ? { agentPid: 4242 } : {}) }], now: Date.now() });
    assert.equal(report((await reg.get('Node', 'host-a'))!).agents.ready, 1);

    // kill -9: systemd's environment for it
    const killed = stopPost({ SERVICE_RESULT: 'signal', EXIT_CODE: 'killed', EXIT_STATUS: 'KILL' });
    assert.equal(killed.status, 0, killed.stderr);
    assert.match(killed.stdout, /the agent \(pid 4242\) was killed by SIGKILL: node 'host-a' marked not ready \(restarts: 0\); systemd restarts it/);
    const obj = (await reg.get('Node', 'host-a'))!;
    const st = agentStatusOf(obj)!;
    assert.equal(st.ready, false);
    assert.equal(st.supervision?.state, 'backoff');
    assert.equal(st.supervision?.lastExit?.signal, 'SIGKILL');
    assert.equal(readAgentRuns(stateDir)?.running, false);
    // the lease still lives (the restart takes it over), yet status counts the node not ready, and says why
    const r = report(obj);
    assert.equal(r.agents.ready, 0);
    assert.equal(r.nodes[0]!.running, false);
    assert.match(r.errors.map((e) => e.reason).join('\n'), /agent not running \(pid 4242 is gone\): it was killed by SIGKILL \d+s ago; systemd restarts it \(Restart=on-failure\); restarts: 0/);

    // the restart counts itself
    const next = recordAgentStart(stateDir, 4343);
    assert.equal(next.restarts, 1);
    assert.equal(next.lastExit?.signal, 'SIGKILL');

    // a refused start (exit 1): the agent's own words reach the node's status
    recordAgentExit(stateDir, { code: 1, signal: null, at: new Date().toISOString(), reason: 'UDP port 4500 is in use by another process' });
    const refused = stopPost({ SERVICE_RESULT: 'exit-code', EXIT_CODE: 'exited', EXIT_STATUS: '1' });
    assert.equal(refused.status, 0, refused.stderr);
    const st2 = agentStatusOf((await reg.get('Node', 'host-a'))!)!;
    assert.equal(st2.pid, 4343);
    assert.equal(st2.error, 'UDP port 4500 is in use by another process');
    assert.deepEqual([st2.supervision?.restarts, st2.supervision?.lastExit?.code], [1, 1]);

    // not installed (an agent waiting for 'veil install', or after an uninstall): nothing is written
    await clearSettings(reg);
    const rv2 = (await reg.get('Node', 'host-a'))!.metadata.resourceVersion;
    recordAgentStart(stateDir, 4444);
    const waiting = stopPost({ SERVICE_RESULT: 'exit-code', EXIT_CODE: 'exited', EXIT_STATUS: '1' });
    assert.match(waiting.stdout, /veil is not installed: nothing to mark/);
    assert.equal((await reg.get('Node', 'host-a'))!.metadata.resourceVersion, rv2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
