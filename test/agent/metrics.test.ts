// The agent's Prometheus metrics, rendered by prom-client from a real datapath engine's status: a
// drop the ESP engine counts (sequence numbers exhausted) reaches veil_datapath_drops_total, as
// every engine drop counter must (the metrics export the engine's own list of them).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';
import { ESP_ENGINE_DROPS, type EspEngineCounters } from '../../src/datapath/messages.js';
import { parsePrometheusText, sampleValue } from '../../src/operator/prometheus-text.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/esp-sequence-exhausted.js', import.meta.url));
const ns = `veil-tseq-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

test('metrics: packets dropped because an SA ran out of sequence numbers are counted in veil_datapath_drops_total', () => {
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO], { timeout: 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.status === 0 && line.startsWith('{'), `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const res = JSON.parse(line) as { sent: number; counters: EspEngineCounters; metrics: string };
  assert.equal(res.counters.sequenceExhausted, res.sent, 'every packet to the peer met the exhausted SA');
  assert.equal(res.counters.txPackets, 0, 'none was sent with a repeated or overflowing sequence number');
  const samples = parsePrometheusText(res.metrics);
  assert.equal(sampleValue(samples, 'veil_datapath_drops_total', { reason: 'datapath_sequenceExhausted' }), res.sent);
  for (const k of ESP_ENGINE_DROPS) {
    assert.equal(sampleValue(samples, 'veil_datapath_drops_total', { reason: `datapath_${k}` }), res.counters[k], `datapath_${k} is exported`);
  }
  // The IPsec families, from the same scrape.
  assert.equal(sampleValue(samples, 'veil_ipsec_keys_in_use'), 2, 'one outbound and one inbound SA');
  assert.equal(sampleValue(samples, 'veil_ipsec_key_id', { kind: 'loaded' }), 7);
  assert.equal(sampleValue(samples, 'veil_ipsec_sa_packets_total', { peer: 'peer', spi: '7', direction: 'out' }), 0);
  assert.equal(sampleValue(samples, 'veil_agent_health', { state: 'Ok' }), 1);
  assert.ok(!samples.some((s) => s.name.startsWith('veil_wireguard_')), 'an IPsec agent serves no WireGuard families');
  assert.match(res.metrics, /^# TYPE veil_datapath_drops_total counter$/m);
});
