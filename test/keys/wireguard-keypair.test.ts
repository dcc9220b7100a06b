import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadOrGenerateKeyPair } from '../../src/keys/wireguard-keypair.js';
import { isVeilError } from '../../src/util/errors.js';

test('first start generates 32 raw bytes (0600, dir 0700); restart reuses them and narrows a readable key file', () => {
  const base = mkdtempSync(join(tmpdir(), 'veil-twgkey-'));
  try {
    const path = join(base, 'state', 'veil_wg0.key');
    const first = loadOrGenerateKeyPair(path);
    assert.equal(first.generated, true);
    const st = statSync(path);
    assert.equal(st.size, 32);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(statSync(join(base, 'state')).mode & 0o777, 0o700);
    assert.match(first.publicKeyBase64, /^[A-Za-z0-9+/]{43}=$/);
    chmodSync(path, 0o644); // as a careless copy leaves it
    const again = loadOrGenerateKeyPair(path);
    assert.equal(again.generated, false);
    assert.equal(statSync(path).mode & 0o777, 0o600, 'a readable key file is narrowed on load');
    assert.equal(again.publicKeyBase64, first.publicKeyBase64);
    assert.deepEqual(new Uint8Array(readFileSync(path)), first.privateKey);
    // wg agrees on the public key
    const wg = spawnSync('wg', ['pubkey'], { input: Buffer.from(first.privateKey).toString('base64'), encoding: 'utf8' });
    if (wg.status === 0) assert.equal(wg.stdout.trim(), first.publicKeyBase64);
    // deleting the file gives a new key
    rmSync(path);
    assert.notEqual(loadOrGenerateKeyPair(path).publicKeyBase64, first.publicKeyBase64);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a key file of the wrong size is refused with a hint, and left alone', () => {
  const base = mkdtempSync(join(tmpdir(), 'veil-twgkey-'));
  try {
    const path = join(base, 'veil_wg0.key');
    writeFileSync(path, 'bm90IGEga2V5IGJ1dCBiYXNlNjQ=\n');
    assert.throws(() => loadOrGenerateKeyPair(path), (e: unknown) => {
      assert.ok(isVeilError(e));
      assert.equal(e.code, 'WG_KEY_LOAD');
      assert.match(e.message, /^failed to load wg private key: incorrect key size 29 bytes/);
      assert.match(e.hint ?? '', /delete it and restart/);
      return true;
    });
    assert.equal(readFileSync(path, 'utf8'), 'bm90IGEga2V5IGJ1dCBiYXNlNjQ=\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
