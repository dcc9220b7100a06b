// The agent API on the network, in-process on loopback: the certificate kept across restarts, the
// token Secret, the constant-time bearer check, the socket client across an agent restart, and the client's pinning (a wrong fingerprint
// sends nothing), its 401 and unreachable errors. The lab version is test/e2e/agent-api.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import { API_CERT_FILE, API_KEY_FILE, loadOrCreateApiCertificate, sameFingerprint, type ApiCertificate } from '../../src/agent/api-certificate.js';
import { API_TOKEN_SECRET, ApiTokenSource, bearerMatches, ensureApiToken, readApiToken } from '../../src/agent/api-token.js';
import { registrySecrets } from '../../src/agent/agent-inputs.js';
import { ApiServer } from '../../src/agent/api-server.js';
import { AgentClient, agentGet, type AgentEndpoint } from '../../src/agent/agent-client.js';
import { createLogger } from '../../src/util/log.js';
import { VeilError } from '../../src/util/errors.js';
import { Writable } from 'node:stream';

const TOKEN = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'veil-t-api-'));
}

test('bearer check: only the exact token in a Bearer header passes', () => {
  assert.equal(bearerMatches(`Bearer ${TOKEN}`, TOKEN), true);
  assert.equal(bearerMatches(`Bearer ${TOKEN.slice(0, -1)}X`, TOKEN), false, 'same length, last character differs');
  assert.equal(bearerMatches(`Bearer ${TOKEN}x`, TOKEN), false, 'longer');
  assert.equal(bearerMatches(`Bearer ${TOKEN.slice(0, 10)}`, TOKEN), false, 'a prefix');
  assert.equal(bearerMatches(undefined, TOKEN), false);
  assert.equal(bearerMatches('', TOKEN), false);
  assert.equal(bearerMatches(TOKEN, TOKEN), false, 'no scheme');
  assert.equal(bearerMatches(`Basic ${TOKEN}`, TOKEN), false);
  assert.equal(bearerMatches('Bearer ', ''), false, 'an empty expected token matches nothing');
});

test('token secret: install makes 32 random bytes once; agents read it, re-reading after the cache time', async () => {
  const dir = tempDir();
  const reg = new EmbeddedRegistry(dir);
  try {
    assert.equal(await readApiToken(reg), undefined);
    assert.equal(await ensureApiToken(reg), true);
    const token = await readApiToken(reg);
    assert.equal(Buffer.from(token!, 'base64url').length, 32);
    assert.equal(await ensureApiToken(reg), false, 'kept when present');
    assert.equal(await readApiToken(reg), token);

    let now = 0;
    const source = new ApiTokenSource(registrySecrets(reg), () => now);
    assert.equal(await source.token(), token);
    await reg.mutate('Secret', API_TOKEN_SECRET, (cur) => ({ ...cur!, data: { token: Buffer.from('rotated').toString('base64') } }));
    now = 5_000;
    assert.equal(await source.token(), token, 'cached');
    now = 10_001;
    assert.equal(await source.token(), 'rotated', 'a rotation lands after the cache time');
  } finally {
    reg.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('certificate: made once with its key 0600, the same fingerprint after a restart', async () => {
  const dir = tempDir();
  try {
    const first = await loadOrCreateApiCertificate(dir, 'n1', '127.0.0.1');
    assert.equal(statSync(join(dir, API_KEY_FILE)).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, API_CERT_FILE)).mode & 0o077, 0o044, 'the certificate is public');
    const x = new X509Certificate(first.certPem);
    assert.equal(x.fingerprint256, first.fingerprint256);
    assert.match(x.subject, /CN=veil-agent n1/);
    assert.match(x.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(first.keyPem)), 'the key is the certificate\'s');
    const again = await loadOrCreateApiCertificate(dir, 'n1', '127.0.0.1');
    assert.equal(again.fingerprint256, first.fingerprint256);
    const otherDir = tempDir();
    const other = await loadOrCreateApiCertificate(otherDir, 'n1', '127.0.0.1');
    rmSync(otherDir, { recursive: true, force: true });
    assert.ok(!sameFingerprint(other.fingerprint256, first.fingerprint256), 'another node, another certificate');
    assert.ok(sameFingerprint(first.fingerprint256.toLowerCase().replace(/:/g, ''), first.fingerprint256));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An API server on loopback answering '{"path": ...}', counting what it answered. */
async function withServer(token: string | undefined | (() => Promise<string | undefined>), body: (s: ApiServer, cert: ApiCertificate, answered: string[], logged: string[]) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const answered: string[] = [];
  const logged: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logged.push(String(chunk)); cb(); } });
  const cert = await loadOrCreateApiCertificate(dir, 'n1', '127.0.0.1');
  const server = new ApiServer({
    host: '127.0.0.1', port: 0, certificate: cert, log: createLogger({}, sink), token: typeof token === 'function' ? token : async () => token,
    answer: async (url) => { answered.push(url); return { type: 'application/json', body: JSON.stringify({ path: url }) }; },
  });
  await server.listen();
  try {
    await body(server, cert, answered, logged);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A raw HTTPS request (no pinning, any header): what an attacker's client could send. */
function raw(url: string, method: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, rejectUnauthorized: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); });
    req.on('error', reject);
    req.end();
  });
}

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<VeilError> {
  const e = await p.then(() => assert.fail('should have failed'), (err: unknown) => err);
  assert.ok(e instanceof VeilError, String(e));
  assert.equal(e.code, code, e.message);
  assert.match(e.message, message);
  assert.ok(e.hint, 'says what to do');
  return e;
}

test('network API: the pinned client with the token gets answers; no token or a wrong one gets 401, counted and logged', async () => {
  await withServer(TOKEN, async (server, cert, answered, logged) => {
    const ep: AgentEndpoint = { kind: 'network', node: 'n1', url: server.address, fingerprint256: cert.fingerprint256, token: TOKEN };
    assert.deepEqual(JSON.parse(await agentGet(ep, '/healthz')), { path: '/healthz' });
    assert.deepEqual(await new AgentClient(ep).ipsecSas(true), { path: '/ipsec/sas?keys=1' });

    assert.equal(await raw(`${server.address}/healthz`, 'GET', {}), 401);
    assert.equal(await raw(`${server.address}/healthz`, 'GET', { authorization: `Bearer ${TOKEN}x` }), 401);
    assert.equal(await raw(`${server.address}/healthz`, 'POST', { authorization: `Bearer ${TOKEN}` }), 405, 'read-only');
    const e = await rejects(agentGet({ ...ep, token: 'wrong' }, '/healthz'), 'AGENT_UNAUTHORIZED', /refused the API token \(401/);
    assert.match(e.hint!, /veil install/);
    assert.deepEqual(server.refused, { no_token: 1, wrong_token: 2, token_unavailable: 0, not_get: 1 });
    assert.deepEqual(answered, ['/healthz', '/ipsec/sas?keys=1'], 'nothing refused reached the handler');
    assert.equal(logged.length, 1, 'refusals log at most one line per 10 s');
    assert.match(logged[0], /"msg":"agent API: request refused".*"reason":"no_token"/);
  });
});

test('network API: a client pinning another fingerprint refuses to talk and sends nothing', async () => {
  await withServer(TOKEN, async (server, cert, answered) => {
    const otherDir = tempDir();
    const other = await loadOrCreateApiCertificate(otherDir, 'impostor', '127.0.0.1');
    rmSync(otherDir, { recursive: true, force: true });
    const ep: AgentEndpoint = { kind: 'network', node: 'n1', url: server.address, fingerprint256: other.fingerprint256, token: TOKEN };
    const e = await rejects(agentGet(ep, '/healthz'), 'AGENT_CERT_MISMATCH', /presented certificate SHA-256 .* but node n1 published/);
    assert.ok(e.message.includes(cert.fingerprint256) && e.message.includes(other.fingerprint256), e.message);
    assert.match(e.hint!, /publish its new certificate/);
    assert.deepEqual(answered, []);
    assert.deepEqual(server.refused, { no_token: 0, wrong_token: 0, token_unavailable: 0, not_get: 0 }, 'not even a refused request: the token never left');
  });
});

test('network API: an agent without its token (absent, or the registry failing) refuses everyone; a closed port is unreachable, with the address', async () => {
  let closed = '';
  await withServer(undefined, async (server, cert) => {
    const ep: AgentEndpoint = { kind: 'network', node: 'n1', url: server.address, fingerprint256: cert.fingerprint256, token: TOKEN };
    await rejects(agentGet(ep, '/healthz'), 'AGENT_UNAUTHORIZED', /401/);
    assert.equal(server.refused.token_unavailable, 1);
    closed = server.address;
  });
  await withServer(() => Promise.reject(new Error('registry unreachable')), async (server, cert, answered, logged) => {
    const ep: AgentEndpoint = { kind: 'network', node: 'n1', url: server.address, fingerprint256: cert.fingerprint256, token: TOKEN };
    await rejects(agentGet(ep, '/healthz'), 'AGENT_UNAUTHORIZED', /401/);
    await rejects(agentGet(ep, '/healthz'), 'AGENT_UNAUTHORIZED', /401/);
    assert.equal(server.refused.token_unavailable, 2);
    assert.deepEqual(answered, []);
    assert.equal(logged.length, 1, 'one line for both');
    assert.match(logged[0], /"reason":"token_unavailable".*"tokenError":"registry unreachable"/);
  });
  const ep: AgentEndpoint = { kind: 'network', node: 'n1', url: closed, fingerprint256: 'AA', token: TOKEN };
  const e = await rejects(agentGet(ep, '/healthz', 2000), 'AGENT_UNREACHABLE', new RegExp(`cannot reach the agent at ${closed.replace(/[.]/g, '\\.')} \\(node n1\\)`));
  assert.match(e.hint!, /route to 127\.0\.0\.1 and that TCP port \d+ \(setting agent\.apiPort\)/);
});

test('socket API: a read right after the agent at the path was replaced (a restart) reaches the new one, from the same process', async () => {
  // One process asks, the agent restarts (its server closes, a new one listens at the same path),
  // the process asks again: with a kept-alive connection the second ask wrote to the closed one (EPIPE).
  const dir = tempDir();
  const socketPath = join(dir, 'agent.sock');
  const serve = async (pid: number) => {
    rmSync(socketPath, { force: true });
    const server = createServer((_req, res) => res.end(JSON.stringify({ pid })));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return server;
  };
  const ep: AgentEndpoint = { kind: 'socket', socketPath };
  try {
    for (let restart = 1; restart <= 20; restart++) {
      const before = await serve(restart);
      assert.deepEqual(JSON.parse(await agentGet(ep, '/healthz')), { pid: restart });
      await new Promise<void>((resolve) => before.close(() => resolve()));
      const after = await serve(restart + 1000);
      try {
        assert.deepEqual(JSON.parse(await agentGet(ep, '/healthz')), { pid: restart + 1000 }, `restart ${restart}`);
      } finally {
        await new Promise<void>((resolve) => after.close(() => resolve()));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
