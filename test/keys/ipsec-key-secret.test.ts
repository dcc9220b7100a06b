// The IPsec key secret is checked where it is written (veil secret create/patch, veil encryption
// rotate-key) as agents check it when they load it, with their messages: nothing an agent would
// refuse reaches the registry, where an agent restarting later would load it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import { createSecret, getSecret, parseFromLiteral, patchSecret, secretValue } from '../../src/control/secrets.js';
import { checkIpsecSecretWrite, rotateIpsecKeySecret } from '../../src/keys/ipsec-key-secret.js';
import { isVeilError } from '../../src/util/errors.js';

const home = mkdtempSync(join(tmpdir(), 'veil-t-keysecret-'));
after(() => rmSync(home, { recursive: true, force: true }));
const K20 = '0123456789abcdef0123456789abcdef01234567';
const K20b = 'aa'.repeat(20);
const check = (before: Parameters<typeof checkIpsecSecretWrite>[1], after: Parameters<typeof checkIpsecSecretWrite>[2]) => checkIpsecSecretWrite('ipsec-keys', before, after);
const refused = (message: RegExp) => (e: unknown) => isVeilError(e) && message.test(e.message);
const patchKeys = (reg: EmbeddedRegistry, value: string | null) => patchSecret(reg, 'ipsec-keys', JSON.stringify({ stringData: { keys: value } }), 'merge', check);
const keysOf = async (reg: EmbeddedRegistry) => secretValue(await getSecret(reg, 'ipsec-keys'), 'keys')?.toString();

test('secret create: an IPsec key file agents would refuse is not written', async () => {
  const reg = new EmbeddedRegistry(join(home, 'create'));
  const create = (entries: string[]) => createSecret(reg, 'ipsec-keys', entries.map(parseFromLiteral), 'Opaque', check);
  await assert.rejects(create(['keys=']), refused(/the IPsec key secret "ipsec-keys" has an empty "keys" value: it holds no key/));
  await assert.rejects(create(['key=3+ x']), refused(/would have no data key "keys"; every agent would fail with: open secret:ipsec-keys\/keys: no such file or directory/));
  await assert.rejects(create(['keys=3 rfc4106(gcm(aes)) abc 128']), refused(/^refused: every agent would refuse this IPsec key file: unable to decode AEAD key string "abc"$/));
  await assert.rejects(create([`keys=3+ rfc4106(gcm(aes)) ${K20} 128\n4+ digest_null "" cipher_null ""`]),
    refused(/^refused: every agent would refuse this IPsec key file: invalid key rotation: key length must not change$/));
  assert.equal(await reg.get('Secret', 'ipsec-keys'), undefined, 'nothing written');
  await create([`keys=3+ rfc4106(gcm(aes)) ${K20} 128`]);
  assert.match((await keysOf(reg))!, /^3\+ /);
});

test('secret patch: same id with a new key, a key length change, a skipped id, an empty or removed value are refused; the key in force stays', async () => {
  const reg = new EmbeddedRegistry(join(home, 'patch'));
  const inForce = `3+ rfc4106(gcm(aes)) ${K20} 128`;
  await createSecret(reg, 'ipsec-keys', [parseFromLiteral(`keys=${inForce}`)], 'Opaque', check);
  const cases: [string | null, RegExp][] = [
    [`3+ rfc4106(gcm(aes)) ${K20b} 128`, /: invalid SPI: changing IPSec keys requires incrementing the key id$/],
    [`4+ rfc4106(gcm(aes)) ${K20b} 96`, /: invalid key rotation: key length must not change$/],
    [`${inForce}\n4+ digest_null "" cipher_null ""`, /: invalid key rotation: key length must not change$/],
    [`5+ rfc4106(gcm(aes)) ${K20b} 128`, /: invalid key rotation: key id 5 does not follow key id 3; the next key id is 4$/],
    ['', /has an empty "keys" value/],
    [null, /would have no data key "keys"/],
  ];
  for (const [value, message] of cases) {
    await assert.rejects(patchKeys(reg, value), refused(message), JSON.stringify(value));
    assert.equal(await keysOf(reg), inForce, `${JSON.stringify(value)}: the secret is unchanged`);
  }
  await patchKeys(reg, `4+ rfc4106(gcm(aes)) ${K20b} 128`);
  assert.match((await keysOf(reg))!, /^4\+ /, 'a valid rotation is written');
  // other keys of the secret may change freely while `keys` stays valid
  await patchSecret(reg, 'ipsec-keys', '{"stringData":{"note":"x"}}', 'merge', check);
});

test('encryption rotate-key: a rotation agents would refuse is not written (an old key veil refuses rotates into one it refuses)', async () => {
  const reg = new EmbeddedRegistry(join(home, 'rotate'));
  const ivs = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);
  await createSecret(reg, 'ipsec-keys', [parseFromLiteral(`keys=3+ rfc4106(gcm(aes)) ${K20} 256`)]); // unchecked: another writer
  await assert.rejects(rotateIpsecKeySecret(reg, 'ipsec-keys', undefined, ivs), refused(/^refused: every agent would refuse this IPsec key file: ICV length 256 is not valid/));
  assert.match((await keysOf(reg))!, /^3\+ /);
  await patchSecret(reg, 'ipsec-keys', JSON.stringify({ stringData: { keys: `3+ rfc4106(gcm(aes)) ${K20} 128` } }));
  assert.equal((await rotateIpsecKeySecret(reg, 'ipsec-keys', undefined, ivs)).spi, 4);
});
