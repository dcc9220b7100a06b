// The agent API over the network on a 3-node IPsec lab, as a CLI on another host reaches it: the
// CLI runs inside another lab node's network namespace (the root namespace is not on the lab's network)
// with VEIL_AGENT_TRANSPORT=network, so `agent status`, `agent encrypt status`, `ipsec state` and
// `status` go over HTTPS to the address each agent published, pinning its published certificate
// and sending the cluster's token. Requests without the token or with a wrong one get 401 and are
// counted and logged; a client pinning another fingerprint refuses to talk; the certificate
// survives an agent restart; a stopped agent is unreachable, said so. (The registry is still the
// embedded file store, shared on disk.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Healthz, IpsecEncryptStatus, PublishedAgentStatus } from '../../src/agent/api.js';
import { parsePrometheusText, sampleValue } from '../../src/operator/prometheus-text.js';
import { waitFor } from '../wait-for.js';

const CLUSTER = `tapi-${process.pid}`;
const home = mkdtempSync(join(tmpdir(), 'veil-t-api-'));
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home, VEIL_CLUSTER: CLUSTER };
delete env['VEIL_AGENT_TRANSPORT'];
const CP = `${CLUSTER}-control-plane`, W1 = `${CLUSTER}-worker`, W2 = `${CLUSTER}-worker2`;
const CLIENT_NS = `veil-${CLUSTER}_control-plane`; // the "operator's machine": another node's namespace
const MAIN = resolve('dist/src/cli/main.js');
let labIsOurs = false;

type Result = { status: number | null; stdout: string; stderr: string };

function veil(...args: string[]): Result {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env, timeout: 90_000 });
}
/** The CLI in the client namespace, forced onto the network path. */
function veilRemote(...args: string[]): Result {
  return spawnSync('ip', ['netns', 'exec', CLIENT_NS, process.execPath, MAIN, ...args], {
    encoding: 'utf8', env: { ...env, VEIL_AGENT_TRANSPORT: 'network' }, timeout: 60_000,
  });
}
/** A node script in the client namespace (stdout back). */
function nodeRemote(script: string): Result {
  return spawnSync('ip', ['netns', 'exec', CLIENT_NS, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', env, timeout: 30_000 });
}
function ok(r: Result): string {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
function published(node: string): PublishedAgentStatus {
  const items = JSON.parse(ok(veil('lab', 'get', 'nodes', '-o', 'json'))).items as { metadata: { name: string }; status?: { agent?: PublishedAgentStatus } }[];
  const agent = items.find((n) => n.metadata.name === node)?.status?.agent;
  assert.ok(agent, `${node} publishes its agent status`);
  return agent;
}
/** Status code of a raw HTTPS GET from the client namespace, trusting any certificate (an attacker's view). */
function rawStatus(url: string, authorization?: string): number {
  const script = `import { request } from 'node:https';
const req = request(${JSON.stringify(url)}, { rejectUnauthorized: false, headers: ${JSON.stringify(authorization ? { authorization } : {})} }, (res) => { res.resume(); res.on('end', () => console.log(res.statusCode)); });
req.on('error', (e) => { console.error(e.message); process.exit(2); });
req.end();`;
  return Number(ok(nodeRemote(script)).trim());
}

/**
 * GET /healthz of W1 from the client namespace through agent-client.ts, with the endpoint it
 * resolves from the registry changed by endpoint (an expression over ep); the error it gives.
 */
function askWith(endpoint: string): { code: string; message: string; hint: string } {
  const script = `import { publishedEndpoint, agentGet } from ${JSON.stringify(resolve('dist/src/agent/agent-client.js'))};
import { openRegistry } from ${JSON.stringify(resolve('dist/src/control/cluster.js'))};
const reg = openRegistry(${JSON.stringify(CLUSTER)});
const ep = await publishedEndpoint(reg, ${JSON.stringify(W1)});
reg.close();
try { await agentGet(${endpoint}, '/healthz'); console.log(JSON.stringify({ code: 'TALKED' })); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })); }`;
  return JSON.parse(ok(nodeRemote(script)).trim()) as { code: string; message: string; hint: string };
}

before(() => {
  ok(veil('lab', 'up', '--name', CLUSTER, '--nodes', '3'));
  labIsOurs = true;
  ok(veil('install', '--encryption', 'ipsec', '--generate-key'));
});
after(() => {
  if (labIsOurs) veil('lab', 'down', '--name', CLUSTER);
  rmSync(home, { recursive: true, force: true });
});

test('e2e agent API: agents publish an HTTPS address and the fingerprint of a certificate kept 0600 in their state dir', () => {
  for (const node of [CP, W1, W2]) {
    const a = published(node);
    assert.match(a.apiAddress ?? '', /^https:\/\/172\.18\.0\.\d+:9964$/, `${node}'s API address`);
    assert.match(a.apiFingerprint ?? '', /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, `${node}'s certificate fingerprint`);
    const dir = join(home, 'clusters', CLUSTER, 'nodes', node);
    assert.equal(statSync(join(dir, 'api-key.pem')).mode & 0o777, 0o600, 'the key is root\'s alone');
    const fp = spawnSync('openssl', ['x509', '-in', join(dir, 'api-cert.pem'), '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(fp.split('=')[1], a.apiFingerprint, 'the published fingerprint is that certificate\'s');
  }
  assert.notEqual(published(W1).apiFingerprint, published(W2).apiFingerprint, 'a certificate per node');
});

test('e2e agent API: from the host\'s own namespace the lab\'s agents are never asked over the network', () => {
  // The lab's addresses exist only in its namespaces; from the host's namespace they would be routed
  // off the machine. Forced onto the network there, the CLI refuses before sending anything.
  const r = spawnSync(process.execPath, [MAIN, 'agent', 'status', W1], { encoding: 'utf8', env: { ...env, VEIL_AGENT_TRANSPORT: 'network' }, timeout: 30_000 });
  assert.equal(r.status, 1, `the socket was not used: ${r.stdout}`);
  assert.match(r.stderr, new RegExp(`the lab's network is reachable only from its own namespaces.*veil lab node-exec`));
  assert.match(ok(veil('agent', 'status', W1)), new RegExp(`^Node: ${W1}$`, 'm'), 'the socket still serves the same CLI without the variable');
});

test('e2e agent API: agent status, agent encrypt status, ipsec state, status, encryption status and metrics work over the network from another node', () => {
  const h = JSON.parse(ok(veilRemote('agent', 'status', W1, '-o', 'json'))) as Healthz;
  assert.equal(h.node, W1);
  assert.equal(h.encryption.mode, 'IPsec');
  assert.ok(h.health.checks.some((c) => c.name === 'api' && c.state === 'Ok' && c.message === published(W1).apiAddress), JSON.stringify(h.health.checks));
  assert.match(ok(veilRemote('agent', 'status', W2)), new RegExp(`^Node: ${W2}$`, 'm'));

  const st = JSON.parse(ok(veilRemote('agent', 'encrypt', 'status', W1, '-o', 'json'))) as IpsecEncryptStatus;
  assert.equal(st.mode, 'IPsec');
  assert.equal(st.publishedSpi, 1);

  const ip = (node: string) => new URL(published(node).apiAddress!).hostname;
  const state = ok(veilRemote('ipsec', 'state', W1));
  assert.match(state, new RegExp(`^src ${ip(W1).replace(/\./g, '\\.')} dst ${ip(W2).replace(/\./g, '\\.')}\\n\\tproto esp spi 0x00000001`, 'm'));
  assert.equal((state.match(/^src /gm) ?? []).length, 4, 'one SA per peer and direction');
  const keys = JSON.parse(ok(veilRemote('ipsec', 'state', W1, '--show-keys', '-o', 'json'))) as { aead?: { key?: string } }[];
  assert.ok(keys.length === 4 && keys.every((e) => /^[0-9a-f]{40}$/.test(e.aead?.key ?? '')), 'key material over the authenticated channel');

  const status = ok(veilRemote('status'));
  assert.match(status, /^Veil:\s+OK$/m);
  assert.match(status, /^Encryption:\s+IPsec \(3\/3 nodes\)$/m);
  const enc = ok(veilRemote('encryption', 'status'));
  assert.match(enc, /^Encryption: IPsec \(3\/3 nodes\)$/m);
  assert.match(enc, /^IPsec expected key count: 4$/m);
  assert.match(ok(veilRemote('metrics', W1, '--raw')), /^# TYPE veil_agent_api_refused_total counter$/m);
});

test('e2e agent API: no token or a wrong token gets 401, counted by reason and logged', () => {
  const url = `${published(W1).apiAddress}/healthz`;
  const refused = (reason: string) => sampleValue(parsePrometheusText(ok(veilRemote('metrics', W1, '--raw'))), 'veil_agent_api_refused_total', { reason }) ?? 0;
  const before = { no: refused('no_token'), wrong: refused('wrong_token') };
  assert.equal(rawStatus(url), 401);
  assert.equal(rawStatus(url, 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), 401);
  assert.equal(rawStatus(url, 'Basic dmVpbDp2ZWls'), 401);
  assert.equal(refused('no_token') - before.no, 1);
  assert.equal(refused('wrong_token') - before.wrong, 2);
  const log = readFileSync(join(home, 'clusters', CLUSTER, 'nodes', W1, 'agent.log'), 'utf8');
  assert.match(log, /"msg":"agent API: request refused","node":"[^"]+","reason":"no_token","from":"172\.18\.0\.\d+"/);

  // the client with a wrong token: a 401 it explains
  const wrong = askWith(`{ ...ep, token: 'not-the-token' }`);
  assert.equal(wrong.code, 'AGENT_UNAUTHORIZED');
  assert.match(wrong.message, /refused the API token \(401: missing or wrong\)/);
  assert.match(wrong.hint, /veil-agent-api-token: re-run 'veil install'/);
  assert.equal(refused('wrong_token') - before.wrong, 3);
  ok(veilRemote('agent', 'status', W1));
});

test('e2e agent API: a client pinning another fingerprint refuses to talk; a restarted agent keeps its certificate', () => {
  const before = published(W1);
  const refused = sampleValue(parsePrometheusText(ok(veilRemote('metrics', W1, '--raw'))), 'veil_agent_api_refused_total', { reason: 'wrong_token' });
  const out = askWith("{ ...ep, fingerprint256: ep.fingerprint256.replace(/^../, (b) => (b === 'AA' ? 'BB' : 'AA')) }");
  assert.equal(out.code, 'AGENT_CERT_MISMATCH');
  assert.match(out.message, new RegExp(`presented certificate SHA-256 ${before.apiFingerprint}, but node ${W1} published`));
  assert.match(out.hint, /publish its new certificate/);
  const after1 = sampleValue(parsePrometheusText(ok(veilRemote('metrics', W1, '--raw'))), 'veil_agent_api_refused_total', { reason: 'wrong_token' });
  assert.equal(after1, refused, 'the token was never sent, so the agent refused nothing');

  ok(veil('agent', 'restart', W1));
  const after = published(W1);
  assert.notEqual(after.pid, before.pid, 'a new agent process');
  assert.equal(after.apiFingerprint, before.apiFingerprint, 'the same certificate after a restart');
  assert.equal(JSON.parse(ok(veilRemote('agent', 'status', W1, '-o', 'json'))).pid, after.pid);
});

test('e2e agent API: a stopped agent is unreachable, and the error says where and what to check', async () => {
  const pid = Number(ok(veil('agent', 'pid', W2)).trim());
  const address = published(W2).apiAddress!;
  process.kill(pid, 'SIGTERM'); // the agent this test's install started
  // the CLI's error is what is tested: it is the probe (each run takes 0.3 s or more, no pause needed)
  const r = await waitFor(`the CLI to fail to reach ${W2}'s stopped agent`, () => { const r = veilRemote('agent', 'status', W2); return r.status !== 0 && r; }, 10_000, { everyMs: 0 });
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`cannot reach the agent at ${address.replace(/[./]/g, '\\$&')} \\(node ${W2}\\) \\(connect ECONNREFUSED`));
  assert.match(r.stderr, /check that the agent runs \('veil status'\), that this machine has a route to 172\.18\.0\.\d+ and that TCP port 9964 \(setting agent\.apiPort\) is open/);
  // From the host's namespace the same question never goes to the network (it would leave the machine).
  const local = veil('agent', 'status', W2);
  assert.equal(local.status, 1, local.stdout);
  assert.doesNotMatch(local.stderr, /cannot reach the agent at https/);
});
