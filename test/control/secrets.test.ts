// Secrets on a real embedded registry, the go-template subset, the YAML output, and the CLI on a
// real etcd.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import { createSecret, deleteSecret, getSecret, parseFromLiteral, patchSecret, secretManifest, secretValue } from '../../src/control/secrets.js';
import { renderGoTemplate } from '../../src/control/go-template.js';
import { parse as parseYaml } from 'yaml';
import { toYaml } from '../../src/cli/output.js';
import { isVeilError } from '../../src/util/errors.js';
import { etcdForTests } from './etcd-helpers.js';

const home = mkdtempSync(join(tmpdir(), 'veil-t-sec-'));
after(() => rmSync(home, { recursive: true, force: true }));
const code = (c: string) => (e: unknown) => isVeilError(e) && e.code === c;
const t = etcdForTests({ members: 1 });

test('create, patch with stringData and data, delete', async () => {
  const reg = new EmbeddedRegistry(join(home, 'r1'));
  const keys = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
  await createSecret(reg, 'ipsec-keys', [parseFromLiteral(`keys=${keys}`), parseFromLiteral('a=b=c')]);
  let s = await getSecret(reg, 'ipsec-keys');
  assert.equal(s.data!['keys'], Buffer.from(keys).toString('base64'));
  assert.equal(secretValue(s, 'a')!.toString(), 'b=c');
  await assert.rejects(createSecret(reg, 'ipsec-keys', []), code('ALREADY_EXISTS'));

  s = await patchSecret(reg, 'ipsec-keys', '{"stringData":{"keys":"4+ new"},"data":{"a":null,"d":"aGk="},"metadata":{"labels":{"rotated":"yes"}}}');
  assert.deepEqual(Object.keys(s.data!).sort(), ['d', 'keys']);
  assert.equal(secretValue(s, 'keys')!.toString(), '4+ new');
  assert.equal(secretValue(s, 'd')!.toString(), 'hi');
  assert.deepEqual(s.metadata.labels, { rotated: 'yes' });
  assert.equal(s.metadata.resourceVersion, 2);

  await assert.rejects(patchSecret(reg, 'ipsec-keys', '{"stringData":'), code('BAD_PATCH'));
  await assert.rejects(patchSecret(reg, 'ipsec-keys', '{"data":{"k":"not base64!"}}'), code('BAD_PATCH'));
  await assert.rejects(patchSecret(reg, 'ipsec-keys', '{"spec":{}}'), code('BAD_PATCH'));
  await assert.rejects(patchSecret(reg, 'nope', '{}'), code('NOT_FOUND'));
  assert.throws(() => parseFromLiteral('novalue'), code('BAD_FLAG'));
  await deleteSecret(reg, 'ipsec-keys');
  await assert.rejects(deleteSecret(reg, 'ipsec-keys'), code('NOT_FOUND'));
  await assert.rejects(getSecret(reg, 'ipsec-keys'), code('NOT_FOUND'));
});

test('go-template subset', () => {
  const obj = { data: { keys: Buffer.from('3+ x 128').toString('base64'), 'a.b': 'eQ==' }, metadata: { name: 'n' } };
  assert.equal(renderGoTemplate('{{.data.keys | base64decode}}{{"\\n"}}', obj), '3+ x 128\n');
  assert.equal(renderGoTemplate('{{.data.keys}}', obj), obj.data.keys);
  assert.equal(renderGoTemplate('{{ index .data "a.b" | base64decode }}', obj), 'y');
  assert.equal(renderGoTemplate('{{.data}}', obj), `map[a.b:eQ== keys:${obj.data.keys}]`);
  assert.equal(renderGoTemplate('[{{.metadata.missing}}] {{- " }} " -}}  !', obj), '[<no value>] }} !');
  assert.throws(() => renderGoTemplate('{{.data.keys | nope}}', obj), code('BAD_TEMPLATE'));
  assert.throws(() => renderGoTemplate('{{.data', obj), code('BAD_TEMPLATE'));
});

test('yaml output quotes what would not read back as the same string', () => {
  const y = toYaml(secretManifest({ kind: 'Secret', metadata: { name: 's', resourceVersion: 7, labels: { on: 'true' } }, data: { k: 'YQ==' } }));
  assert.equal(y, ['apiVersion: v1', 'kind: Secret', 'metadata:', '  name: s', '  labels:', '    "on": "true"', '  resourceVersion: "7"', 'type: Opaque', 'data:', '  k: YQ==', ''].join('\n'));
  assert.equal(toYaml({ a: [], b: {}, c: [{ x: 1 }, 'a: b'] }), 'a: []\nb: {}\nc:\n- x: 1\n- "a: b"\n');
  // what reads back as another type or another string, in a YAML 1.2 or a 1.1 (kubectl's) reader
  const tricky = { on: 'yes', n: '0x1F', e: '1e3', t: '2026-01-01T00:00:00Z', s: ' lead', m: 'a\nb', q: "it's \"q\"", h: '#x', star: '*a', empty: '', none: null, list: [[], {}, [1, 'true']] };
  for (const version of ['1.1', '1.2'] as const) assert.deepEqual(parseYaml(toYaml(tricky), { version }), tricky, version);
});

test('the veil secret CLI: the seed tutorial commands', () => {
  const env = { ...process.env, VEIL_HOME: join(home, 'cli'), VEIL_CLUSTER: 'tsec' };
  const veil = (...args: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', 'secret', ...args], { encoding: 'utf8', env });
  assert.equal(spawnSync(process.execPath, ['dist/src/cli/main.js', 'cluster', 'add', 'tsec', '--etcd-endpoints', t.etcd.endpoints.join(',')], { env }).status, 0);
  const keys = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
  assert.equal(veil('create', 'generic', 'ipsec-keys', `--from-literal=keys=${keys}`).status, 0);
  assert.equal(veil('get', 'ipsec-keys', '-o', 'go-template={{.data.keys | base64decode}}{{"\\n"}}').stdout, keys + '\n');
  assert.match(veil('get', 'ipsec-keys').stdout, /^NAME\s+TYPE\s+DATA\s+AGE\nipsec-keys\s+Opaque\s+1\s+\d+s\n$/);
  const rotated = '4+ rfc4106(gcm(aes)) 89abcdef0123456789abcdef0123456789abcdef 128';
  const p = veil('patch', 'ipsec-keys', '-p', JSON.stringify({ stringData: { keys: rotated } }));
  assert.equal(p.status, 0, p.stderr);
  assert.equal(JSON.parse(veil('get', 'ipsec-keys', '-o', 'json').stdout).data.keys, Buffer.from(rotated).toString('base64'));
  // the IPsec key secret is checked as agents check it: a key they would refuse is not written
  const refused = veil('patch', 'ipsec-keys', '-p', '{"stringData":{"keys":"4+ rotated"}}');
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /refused: every agent would refuse this IPsec key file: invalid format: 2 fields|refused: every agent would refuse this IPsec key file: missing IPSec key or invalid format/);
  writeFileSync(join(home, 'k.txt'), 'from file');
  assert.equal(veil('create', 'f', '--from-file', `x=${join(home, 'k.txt')}`).status, 0);
  assert.equal(veil('get', 'f', '-o', 'yaml').stdout.includes(`x: ${Buffer.from('from file').toString('base64')}`), true);

  const bad = veil('patch', 'ipsec-keys', '-p', '{oops');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /not valid JSON.*stringData/);
  const missing = veil('get', 'nope');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /secret 'nope' not found: create it with/);
  assert.equal(veil('get', 'ipsec-keys', '--bogus').status, 2);
  assert.equal(veil('get', 'ipsec-keys', '-o', 'table').status, 2);
  assert.equal(veil('delete', 'ipsec-keys').status, 0);
  assert.equal(veil('delete', 'ipsec-keys').status, 1);
  assert.match(veil('create', '-h').stdout, /Examples:/);
});
