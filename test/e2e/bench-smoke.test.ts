// The regression guard for the bench: `node dist/bench/run.js --smoke` must pass traffic in every
// mode (plain, wireguard-go, veil WireGuard, veil IPsec) and leave no namespace behind. It never
// asserts a timing: throughput moves too much on a shared 2-core machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBenchScript } from './cli.js';

const CLUSTER = `tbenchsmoke-${process.pid}`; // a run cut off mid-test must not collide with the next
const MODES = ['plain', 'wireguard-go', 'veil-wireguard', 'veil-ipsec'];

test('e2e bench smoke: every mode passes TCP, UDP and ping traffic, and the lab is gone afterwards', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tbench-'));
  try {
    const json = join(dir, 'smoke.json');
    // raw ESP (veil-ipsec-esp) is left to the bench itself: the kernel IPsec e2e runs it, and CI time is short
    const r = await runBenchScript('dist/bench/run.js', ['--smoke', '--modes', MODES.join(','), '--name', CLUSTER, '--out', json], 110_000);
    assert.equal(r.code, 0, `bench --smoke exited ${r.code}:\n${r.out}`);
    const result = JSON.parse(readFileSync(json, 'utf8')) as { summary: Record<string, Record<string, number | null>>; failures: unknown[] };
    assert.deepEqual(result.failures, []);
    for (const mode of MODES) {
      const f = result.summary[mode];
      assert.ok(f, `no figures for ${mode}:\n${r.out}`);
      for (const key of ['tcp1Gbps', 'tcp1RGbps', 'tcp4Gbps', 'udpRxGbps', 'rttP50Us']) {
        assert.ok((f[key] ?? 0) > 0, `${mode}: ${key} = ${f[key]} (no traffic?)\n${r.out}`);
      }
      if (mode !== 'plain') assert.ok((f['cpuSecPerGB'] ?? 0) > 0 && (f['peakRssMB'] ?? 0) > 0, `${mode}: no datapath process measured`);
    }
    assert.match(r.out, /\| TCP 1 stream Gbit\/s \|/);
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`veil-${CLUSTER}_`));
    assert.deepEqual(left, [], 'the bench left namespaces behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
