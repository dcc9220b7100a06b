// Configuration a user writes: the host agent's YAML (/etc/veil/agent.yaml, with $VEIL_* and
// flags on top), the CLI's cluster config (~/.config/veil/config.yaml) and `--set key=value`
// install settings. Any text, near-valid documents built from the real keys, YAML aliases: a
// config, or a VeilError saying where and what; a valid config reads back as written.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { applySet, defaultSettings, parseDuration, SETTING_KEYS } from '../../src/agent/settings.js';
import { loadClusterConfig } from '../../src/control/cluster-config.js';
import { CONFIG_FIELDS, loadAgentConfig } from '../../src/host/agent-config.js';
import { expectClearError, harness, scratchDir, thrown } from './harness.js';

const anyJson = fc.jsonValue({ maxDepth: 2 });
const goodOrAny = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: a, weight: 8 }, { arbitrary: anyJson, weight: 1 });

/** An agent.yaml document: real keys (and near misses) with good and bad values. */
const agentDoc = fc.record({
  cluster: goodOrAny(fc.constantFrom('prod', 'default', 'lab', 'prod', 'Bad Name', '')),
  nodeName: goodOrAny(fc.constantFrom('host-a', 'host-b', 'h1.example', 'node-3', 'HOST', 'a..b', 'x'.repeat(260))),
  etcd: goodOrAny(fc.record({
    endpoints: goodOrAny(fc.oneof(fc.constantFrom('http://127.0.0.1:2379', 'https://10.0.0.1:2379', 'unix:///run/etcd.sock', 'ftp://x:1', 'http://nohost', '127.0.0.1:2379'),
      fc.array(fc.constantFrom('http://127.0.0.1:2379', 'https://[::1]:2379', 'not a url'), { maxLength: 3 }))),
    caFile: fc.constantFrom('/nonexistent/ca.pem', 'relative.pem'),
    username: goodOrAny(fc.constantFrom('root', '')),
  }, { requiredKeys: ['endpoints'] }).chain((e) => fc.nat(9).map((n) => (n === 0 ? { ...e, endpoint: e.endpoints } : n < 3 ? e : { endpoints: e.endpoints })))), // endpoint: a near miss
  underlay: goodOrAny(fc.record({
    interface: goodOrAny(fc.constantFrom('eth0', 'ens3', 'veil-u0', 'a/b', 'x'.repeat(16))),
    address: goodOrAny(fc.constantFrom('10.0.0.1', 'fd00::1', '192.168.1.9', '10.0.0.1/24', 'host')),
    mtu: goodOrAny(fc.oneof(fc.integer({ min: 1200, max: 70000 }), fc.constantFrom('1500', '1500.5', '-1'))),
  }, { requiredKeys: [] })),
  podCIDRs: goodOrAny(fc.oneof(fc.constantFrom('10.244.1.0/24', '10.244.1.0/24,fd00::/64', '10.244.3.0/24', '10.244.1.5/24', 'x'), fc.array(fc.constantFrom('10.244.2.0/24', '300.0.0.0/8'), { maxLength: 2 }))),
  stateDir: goodOrAny(fc.constantFrom('/var/lib/veil', '/srv/veil', 'var/lib')),
  runDir: goodOrAny(fc.constantFrom('/run/veil')),
}, { requiredKeys: [] });

/** YAML text: documents from the keys above, alias bombs, or any text. */
const yamlText = fc.oneof(
  { weight: 4, arbitrary: agentDoc.map((d) => stringify(d)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 12 }).map((n) => ['a: &a [x, x]', ...Array.from({ length: n }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join('\n')) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('cluster:', ' ', '- ', 'etcd:', '  endpoints:', '&x', '*x', '{', '}', '[', ']', ':', '"', "'", '\n', '\t', '#', '!!binary', '<<: *x', '---', '...', 'null', '~'), { maxLength: 20 }).map((t) => t.join('')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
);

/** A cluster config document (clusters: name + etcd registry). */
const clusterDoc = fc.record({
  'current-cluster': goodOrAny(fc.constantFrom('prod', 'lab')),
  clusters: goodOrAny(fc.array(goodOrAny(fc.record({
    name: goodOrAny(fc.constantFrom('prod', 'lab', '')),
    registry: goodOrAny(fc.record({
      type: goodOrAny(fc.constantFrom('etcd', 'embedded')),
      endpoints: goodOrAny(fc.array(fc.constantFrom('http://127.0.0.1:2379', 'https://10.0.0.1:2379', 'nope'), { maxLength: 2 })),
      ca: goodOrAny(fc.constantFrom('ca.pem', '/etc/ca.pem', '')),
      'password-file': goodOrAny(fc.constantFrom('pw')),
    }, { requiredKeys: [] })),
  }, { requiredKeys: [] })), { maxLength: 3 })),
}, { requiredKeys: [] });

const seen = { agentOk: 0, agentRefused: 0, clusterOk: 0, clusterRefused: 0 };

export const agentConfig = harness({
  name: 'config',
  target: 'src/host/agent-config.ts loadAgentConfig, src/control/cluster-config.ts loadClusterConfig, src/agent/settings.ts applySet',
  runs: 20_000,
  ciRuns: 600,
  property: () => {
    const dir = scratchDir('config');
    const file = join(dir, 'agent.yaml');
    const clusters = join(dir, 'config.yaml');
    return fc.property(
      yamlText, fc.oneof(clusterDoc.map((d) => stringify(d)), yamlText), fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('VEIL_CLUSTER', 'VEIL_UNDERLAY_MTU', 'VEIL_POD_CIDRS', 'VEIL_ETCD_ENDPOINTS'), fc.oneof(fc.constantFrom('lab', '1400', '10.9.0.0/24', 'http://127.0.0.1:2379'), fc.string({ maxLength: 20 }))) }),
      fc.tuple(fc.oneof(fc.constantFrom(...SETTING_KEYS), fc.string({ maxLength: 12 })), fc.oneof(fc.constantFrom('true', 'false', '5m', '1m30s', '0', '9964', '70000', 'wireguard', '8', '9'), fc.string({ maxLength: 8 })), fc.constantFrom('=', ' = ', '')),
      (agentYaml, clusterYaml, env, [key, value, eq]) => {
        writeFileSync(file, agentYaml);
        const e1 = expectClearError(thrown(() => loadAgentConfig({ file, env })), ['BAD_AGENT_CONFIG'], 'loadAgentConfig');
        if (e1) { seen.agentRefused++; assert.ok(e1.hint, 'the error says what to do'); } else seen.agentOk++;
        writeFileSync(clusters, clusterYaml);
        const e2 = expectClearError(thrown(() => loadClusterConfig(clusters)), ['BAD_CLUSTER_CONFIG'], 'loadClusterConfig');
        if (e2) seen.clusterRefused++; else seen.clusterOk++;
        const settings = defaultSettings();
        const assignment = `${key}${eq}${value}`;
        const e3 = expectClearError(thrown(() => applySet(settings, assignment)), ['BAD_SET', 'UNKNOWN_SETTING', 'BAD_SETTING', 'BAD_DURATION'], 'applySet');
        if (!e3) {
          const at = assignment.indexOf('=');
          const v = (settings as unknown as Record<string, unknown>)[assignment.slice(0, at).trim()];
          const given = assignment.slice(at + 1).trim();
          assert.equal(String(v), typeof v === 'number' ? String(Number(given)) : given, 'the setting holds the value given');
          if (typeof v === 'string' && /duration|Interval|Keepalive/i.test(key)) assert.ok(Number.isFinite(parseDuration(v)));
        }
      },
    );
  },
  report: () => `agent.yaml read ${seen.agentOk}, refused ${seen.agentRefused}; cluster config read ${seen.clusterOk}, refused ${seen.clusterRefused}`,
});

/** A valid agent.yaml reads back as written. */
export const agentConfigRoundTrip = harness({
  name: 'config-roundtrip',
  target: 'src/host/agent-config.ts: a valid agent.yaml reads back as written',
  runs: 20_000,
  ciRuns: 1_000,
  property: () => {
    const file = join(scratchDir('config-rt'), 'agent.yaml');
    return fc.property(
      fc.record({
        cluster: fc.stringMatching(/^[a-z][a-z0-9-]{0,20}[a-z0-9]$/), nodeName: fc.domain().map((x) => x.toLowerCase()),
        endpoints: fc.array(fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `http://${a}:${p}`), { minLength: 1, maxLength: 3 }),
        mtu: fc.integer({ min: 1280, max: 65535 }), podCIDRs: fc.array(fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.${a}.${b}.0/24`), { maxLength: 3 }),
      }),
      (c) => {
        writeFileSync(file, stringify({ cluster: c.cluster, nodeName: c.nodeName, etcd: { endpoints: c.endpoints }, underlay: { mtu: c.mtu }, ...(c.podCIDRs.length ? { podCIDRs: c.podCIDRs } : {}) }));
        let cfg;
        try { cfg = loadAgentConfig({ file, env: {} }); } catch (e) {
          // a cluster or node name the generator made that the checks refuse: must be a clear refusal
          expectClearError(e, ['BAD_AGENT_CONFIG'], 'loadAgentConfig');
          assert.match((e as Error).message, /cluster|nodeName/);
          return;
        }
        assert.deepEqual([cfg.cluster, cfg.nodeName, cfg.etcd.endpoints, cfg.underlay.mtu, cfg.podCIDRs], [c.cluster, c.nodeName, c.endpoints, c.mtu, c.podCIDRs]);
        assert.ok(CONFIG_FIELDS.length > 0);
      },
    );
  },
});

export const harnesses = [agentConfig, agentConfigRoundTrip];
