// The scale bench's CI run (issue #13) at 200 synthetic nodes: the real agents of a 2-node IPsec lab
// take every synthetic node as a peer (datapath entry and route each), whose health probes the
// synthetic peers open and ack with the keys they derive, follow key changes into the datapath,
// survive an IPsec rotation across 200 simulated peers with zero loss between the real pair and
// without breaking the rotation rule, and drop every synthetic peer and route when the nodes go. It asserts correctness only: the timings are the bench's (npm run bench).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBenchScript } from './cli.js';

test('e2e scale smoke: 200 synthetic nodes become peers, key changes reach the datapath, a rotation loses nothing and keeps the rule', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tscale-'));
  try {
    const json = join(dir, 'scale.json');
    const started = Date.now();
    const r = await runBenchScript('dist/bench/scale.js', ['--smoke', '--name', `tscalesmoke-${process.pid}`, '--out', json], 240_000);
    console.log(`scale smoke: ${Math.round((Date.now() - started) / 1000)} s`);
    assert.equal(r.code, 0, `scale bench --smoke exited ${r.code}:\n${r.out}`);
    const result = JSON.parse(readFileSync(json, 'utf8')) as {
      failures: string[]; sizes: { size: number; routes: number; keyChangeP99Ms: number; ipsecPeers?: { responderProbesPerS: number } }[];
      rotation: { peers: number; pingsSent: number; pingsLost: number; ruleViolations: string[]; samples: number; completedMs: number };
    };
    assert.deepEqual(result.failures, []);
    assert.equal(result.sizes[0]?.size, 200);
    assert.equal(result.sizes[0]?.routes, 201, 'a route per peer: 200 synthetic and the real one');
    assert.ok(Number.isFinite(result.sizes[0]?.keyChangeP99Ms), 'every key change reached the datapath');
    assert.ok((result.sizes[0]?.ipsecPeers?.responderProbesPerS ?? 0) > 0, `the synthetic peers opened and acked the agents' probes: ${JSON.stringify(result.sizes[0]?.ipsecPeers)}`);
    assert.equal(result.rotation.peers, 200);
    assert.ok(result.rotation.pingsSent >= 500 && result.rotation.pingsLost === 0, `pings: ${result.rotation.pingsLost} of ${result.rotation.pingsSent} lost`);
    assert.deepEqual(result.rotation.ruleViolations, []);
    assert.ok(result.rotation.samples > 0 && result.rotation.completedMs >= 0, 'the rotation was sampled and completed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
