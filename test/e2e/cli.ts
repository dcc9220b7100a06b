// The veil CLI as the end-to-end tests run it: a child process with the test's environment, and
// the check that a run succeeded (its output and error in the failure message); and the agent API
// and cluster status the CLI asks, from the test's own process.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { AgentClient } from '../../src/agent/agent-client.js';
import { openRegistry } from '../../src/control/cluster.js';
import { clusterStatus } from '../../src/operator/observe.js';
import type { StatusReport } from '../../src/operator/cluster-status.js';

export const MAIN = 'dist/src/cli/main.js';

export interface Result { status: number | null; stdout: string; stderr: string }

/** A function running `veil ARGS…` with env, killed after timeoutMs. */
export function veilCli(env: NodeJS.ProcessEnv, timeoutMs = 60_000): (...args: string[]) => Result {
  return (...args) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env, timeout: timeoutMs });
}

/** The run's stdout; fails the test with its exit status, stdout and stderr if it did not exit 0. */
export function ok(r: Result): string {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * The node's agent API, asked from this process as the CLI asks it: for polls, which then start no
 * process (0.3-0.5 s of CPU each on a 2-core CI machine, taken from the agents being waited for).
 * One-off reads keep the CLI.
 */
export const agentApi = (cluster: string, node: string): Promise<AgentClient> => AgentClient.connect(cluster, node);

/** What `veil status -o json` reports, computed in this process as the CLI computes it: for polls, as agentApi. */
export async function clusterStatusReport(cluster: string): Promise<StatusReport> {
  const reg = openRegistry(cluster);
  try {
    return await clusterStatus(cluster, reg);
  } finally {
    reg.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a bench script (dist/bench/…) to its end, output collected; SIGTERM after timeoutMs (the benches clean up on it). */
export function runBenchScript(script: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}
