// Key files: the IPsec key file (Cilium's grammar) on any text and on near-grammatical lines built
// from its own tokens, its round trip on every valid key shape, and the WireGuard private key file
// on any bytes. The contract: a key, or a VeilError that names the line and says what to write.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseKeyFile, type IpsecKey } from '../../src/keys/ipsec-keyfile.js';
import { loadOrGenerateKeyPair, publicKeyBase64Of } from '../../src/keys/wireguard-keypair.js';
import { expectClearError, harness, scratchDir, thrown } from './harness.js';

const hex = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b).toString('hex'));
const TOKENS = ['3+', '15', '0', '16', '-1', '+', '0x', '""', 'rfc4106(gcm(aes))', 'rfc4543(gcm(aes))', 'hmac(sha256)', 'hmac(sha512)',
  'digest_null', 'cbc(aes)', 'cipher_null', '96', '128', '256', '64', ' ', '  ', '\t', '\r', '\n', '#', '\u00a0', '9223372036854775808'];

const keyLineish = fc.array(fc.oneof(fc.constantFrom(...TOKENS), hex(20), hex(16), hex(32), fc.string({ maxLength: 6 })), { maxLength: 7 })
  .map((words) => words.join(' '));

/** A valid key as its line, with what it must parse to. */
const validKey = fc.oneof(
  fc.record({ id: fc.integer({ min: 1, max: 15 }), plus: fc.boolean(), aes: fc.constantFrom(16, 24, 32), icv: fc.constantFrom(96, 128), prefix: fc.boolean() })
    .chain((k) => hex(k.aes + 4).map((key) => ({ line: `${k.id}${k.plus ? '+' : ''} rfc4106(gcm(aes)) ${k.prefix ? '0x' : ''}${key} ${k.icv}`, spi: k.id, plus: k.plus, keys: [key] }))),
  fc.record({ id: fc.integer({ min: 1, max: 15 }), plus: fc.boolean(), auth: fc.constantFrom('hmac(sha256)', 'hmac(sha512)'), authBytes: fc.integer({ min: 16, max: 64 }), aes: fc.constantFrom(16, 24, 32) })
    .chain((k) => fc.tuple(hex(k.authBytes), hex(k.aes)).map(([a, e]) => ({ line: `${k.id}${k.plus ? '+' : ''} ${k.auth} ${a} cbc(aes) ${e}`, spi: k.id, plus: k.plus, keys: [a, e] }))),
);

function keyMaterial(k: IpsecKey): string[] {
  return k.kind === 'aead' ? [Buffer.from(k.key).toString('hex')] : [Buffer.from(k.authKey).toString('hex'), Buffer.from(k.encKey).toString('hex')];
}

export const ipsecKeyFile = harness({
  name: 'ipsec-keyfile',
  target: 'src/keys/ipsec-keyfile.ts parseKeyFile (the IPsec key secret\'s text)',
  runs: 500_000,
  ciRuns: 15_000,
  property: () => fc.property(
    fc.oneof(fc.string({ maxLength: 200 }), fc.array(keyLineish, { maxLength: 4 }).map((l) => l.join('\n'))),
    fc.array(validKey, { minLength: 1, maxLength: 3 }), fc.boolean(),
    (text, valid, crlf) => {
      // Any text: keys, or an error that says which line and what a key line looks like.
      const r = parseKeyFile(text);
      if (r.ok) {
        assert.ok(r.value.length > 0);
        for (const k of r.value) assert.ok(k.spi >= 1 && k.spi <= 15);
      } else {
        expectClearError(r.error, ['IPSEC_KEY_FORMAT', 'IPSEC_KEY_UNSUPPORTED'], 'parseKeyFile');
        assert.match(r.error.hint ?? '', /^line \d+ of the IPsec key file; /);
      }
      // Valid keys (LF or CRLF lines): parsed back to what was written.
      const file = valid.map((v) => v.line).join(crlf ? '\r\n' : '\n') + '\n';
      const back = parseKeyFile(file);
      assert.ok(back.ok, `a valid key file was refused: ${back.ok ? '' : back.error.message}\n${file}`);
      assert.deepEqual(back.value.map((k) => [k.spi, k.plus, keyMaterial(k)]), valid.map((v) => [v.spi, v.plus, v.keys.map((x) => x.toLowerCase())]));
    },
  ),
});

export const wireguardKeyFile = harness({
  name: 'wg-keyfile',
  target: 'src/keys/wireguard-keypair.ts loadOrGenerateKeyPair on any file contents',
  runs: 100_000,
  ciRuns: 2_000,
  property: () => {
    const path = join(scratchDir('wgkey'), 'veil_wg0.key');
    return fc.property(
      fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.constant(null)),
      (contents) => {
        rmSync(path, { force: true });
        if (contents) writeFileSync(path, contents, { mode: 0o600 });
        let kp: ReturnType<typeof loadOrGenerateKeyPair> | undefined;
        const e = expectClearError(thrown(() => { kp = loadOrGenerateKeyPair(path); }), ['WG_KEY_LOAD'], 'loadOrGenerateKeyPair');
        if (e) {
          assert.ok(contents && contents.length !== 32, `refused a 32-byte key: ${e.message}`);
          assert.match(e.message, /incorrect key size/);
          return;
        }
        assert.equal(kp!.generated, contents === null);
        assert.equal(kp!.publicKeyBase64, publicKeyBase64Of(kp!.privateKey));
        assert.match(kp!.publicKeyBase64, /^[A-Za-z0-9+/]{43}=$/);
      },
    );
  },
});

export const harnesses = [ipsecKeyFile, wireguardKeyFile];
