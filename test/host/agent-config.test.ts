// The host agent's config: file, then VEIL_* variables, then flags; every bad value refused with
// where it came from and what to write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../../src/host/agent-config.js';
import { isVeilError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'veil-agent-config-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Asserts the load fails with BAD_AGENT_CONFIG and a message matching `what`. */
function refuses(what: RegExp, ...args: Parameters<typeof loadAgentConfig>): void {
  assert.throws(() => loadAgentConfig(...args), (e) => isVeilError(e) && e.code === 'BAD_AGENT_CONFIG' && what.test(e.describe()), String(what));
}

const ca = file('ca.crt', 'not checked here: etcd checks it');

test('the file gives every field; defaults fill the rest', () => {
  const p = file('a.yaml', `cluster: prod\netcd:\n  endpoints: [https://10.0.0.1:2379, "https://10.0.0.2:2379/"]\n  caFile: ${ca}\npodCIDRs: [10.244.1.0/24]\nunderlay:\n  interface: eth1\n  mtu: 9000\n`);
  const c = loadAgentConfig({ file: p, env: {} });
  assert.equal(c.cluster, 'prod');
  assert.equal(c.nodeName, hostname().toLowerCase());
  assert.deepEqual(c.etcd.endpoints, ['https://10.0.0.1:2379', 'https://10.0.0.2:2379']);
  assert.equal(c.etcd.caFile, ca);
  assert.deepEqual(c.podCIDRs, ['10.244.1.0/24']);
  assert.deepEqual(c.underlay, { interface: 'eth1', mtu: 9000 });
  assert.equal(c.stateDir, '/var/lib/veil');
  assert.equal(c.runDir, '/run/veil');
});

test('variables override the file, flags override both', () => {
  const p = file('b.yaml', 'cluster: prod\nnodeName: host-a\netcd: {endpoints: [http://127.0.0.1:2379]}\n');
  const env = { VEIL_NODE_NAME: 'host-b', VEIL_POD_CIDRS: '10.244.2.0/24, fd00:10:244:2::/64', VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2380,http://127.0.0.1:2381' };
  const c = loadAgentConfig({ file: p, env });
  assert.equal(c.nodeName, 'host-b');
  assert.deepEqual(c.podCIDRs, ['10.244.2.0/24', 'fd00:10:244:2::/64']);
  assert.deepEqual(c.etcd.endpoints, ['http://127.0.0.1:2380', 'http://127.0.0.1:2381']);
  const f = loadAgentConfig({ file: p, env, flags: { nodeName: 'host-c', podCIDRs: ['10.244.3.0/24'], 'underlay.mtu': '1400' } });
  assert.equal(f.nodeName, 'host-c');
  assert.deepEqual(f.podCIDRs, ['10.244.3.0/24']);
  assert.equal(f.underlay.mtu, 1400);
});

test('no file at the default path is fine; a named file that is missing is not', () => {
  const c = loadAgentConfig({ file: undefined, env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379' } });
  assert.deepEqual(c.etcd.endpoints, ['http://127.0.0.1:2379']);
  refuses(/cannot read the config file \(ENOENT\).*--config/, { file: join(dir, 'missing.yaml'), env: {} });
});

test('bad input is refused with its source and what to do', () => {
  refuses(/not valid YAML/, { file: file('c.yaml', 'etcd: [unclosed\n'), env: {} });
  refuses(/not a mapping/, { file: file('d.yaml', '- a\n- b\n'), env: {} });
  refuses(/unknown setting "etcd.endpoint".*did you mean "etcd.endpoints"/, { file: file('e.yaml', 'etcd:\n  endpoint: http://127.0.0.1:2379\n'), env: {} });
  refuses(/unknown setting "podcidrs".*did you mean "podCIDRs"/, { file: file('f.yaml', 'podcidrs: [10.0.0.0/24]\n'), env: {} });
  refuses(/no etcd endpoints.*VEIL_ETCD_ENDPOINTS/, { file: file('g.yaml', 'cluster: prod\n'), env: {} });
  refuses(/\$VEIL_ETCD_ENDPOINTS: etcd.endpoints: "10.0.0.1:2379" is not a URL/, { env: { VEIL_ETCD_ENDPOINTS: '10.0.0.1:2379' } });
  refuses(/has no port.*2379/, { env: { VEIL_ETCD_ENDPOINTS: 'http://10.0.0.1' } });
  refuses(/--pod-cidr: .*10.244.1.0\/24/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379' }, flags: { podCIDRs: ['10.244.1.0/33'] } });
  refuses(/--underlay-mtu: underlay.mtu "80" is not an MTU.*1280/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379' }, flags: { 'underlay.mtu': '80' } });
  refuses(/\$VEIL_UNDERLAY_ADDRESS.*not an IP address/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', VEIL_UNDERLAY_ADDRESS: '10.0.0.300' } });
  refuses(/\$VEIL_NODE_NAME: nodeName "Host_A" is not a valid name/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', VEIL_NODE_NAME: 'Host_A' } });
  refuses(/invalid cluster name/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', VEIL_CLUSTER: 'a_b' } });
  refuses(/certFile and etcd.keyFile go together/, { env: { VEIL_ETCD_ENDPOINTS: 'https://127.0.0.1:2379', VEIL_ETCD_CERT_FILE: ca } });
  refuses(/TLS files are set but every etcd endpoint is http/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', VEIL_ETCD_CA_FILE: ca } });
  refuses(/cannot read \/nonexistent\/ca.crt \(ENOENT\)/, { env: { VEIL_ETCD_ENDPOINTS: 'https://127.0.0.1:2379', VEIL_ETCD_CA_FILE: '/nonexistent/ca.crt' } });
  refuses(/not an absolute path/, { env: { VEIL_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', VEIL_STATE_DIR: 'var/lib/veil' } });
});
