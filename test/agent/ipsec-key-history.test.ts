// No old IPsec key outlives its rotation in etcd's history: the agent's IPsec mode on a real etcd,
// a rotation through the secret, and etcdctl asking for the secret at the revision that held the old
// key. Readable while the rotation runs; "compacted" once keyRotationDuration is over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { IpsecMode } from '../../src/agent/ipsec-mode.js';
import { registrySecrets } from '../../src/agent/agent-inputs.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { Health } from '../../src/agent/health.js';
import { createLogger } from '../../src/util/log.js';
import { objectKey } from '../../src/control/etcd/keys.js';
import { etcdForTests, waitFor } from '../control/etcd-helpers.js';

const t = etcdForTests({ members: 1 });
const OLD = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
const NEW = '4+ rfc4106(gcm(aes)) 89abcdef0123456789abcdef0123456789abcdef 128';
const b64 = (s: string) => Buffer.from(s).toString('base64');

test('after a rotation and its keyRotationDuration, etcd no longer hands out the old key at its revision', { timeout: 60_000 }, async () => {
  const reg = t.registry('hist');
  const stateDir = mkdtempSync(join(tmpdir(), 'veil-keyhist-'));
  const logs: string[] = [];
  const log = createLogger({}, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  // long enough that the positive control below is read before the old key's expiry on a loaded machine
  const settings = { ...defaultSettings(), 'encryption.ipsec.keyRotationDuration': '3s' };
  const oldRev = (await reg.create({ kind: 'Secret', metadata: { name: 'ipsec-keys' }, type: 'Opaque', data: { keys: b64(OLD) } })).metadata.resourceVersion!;
  const mode = new IpsecMode({
    node: { name: 'n1', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], podGateway: '10.244.1.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'b' },
    stateDir, settings, secrets: registrySecrets(reg), log, health: new Health(), requestReconcile: () => undefined,
  });
  const key = objectKey('hist', 'Secret', 'ipsec-keys');
  const atOldRev = () => t.etcd.etcdctl(['get', key, `--rev=${oldRev}`, '--print-value-only']);
  try {
    await mode.prepare();
    await reg.mutate('Secret', 'ipsec-keys', (cur) => cur && { ...cur, data: { keys: b64(NEW) } });
    // the history holds the old key after the write (what the fix must remove): read at once, as the
    // retired key's keyRotationDuration can only start once the mode has loaded the new one
    const held = atOldRev();
    held.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    await waitFor(() => logs.some((l) => l.includes('new IPsec key loaded')), 10_000, () => `the new key loaded (log: ${logs.join('')})`);
    assert.match(Buffer.from(/"keys":"([^"]+)"/.exec(await held)![1]!, 'base64').toString(), /^3\+ /);
    let refusal = '';
    await waitFor(async () => {
      try { await atOldRev(); return false; } catch (e) { refusal = (e as Error).message; return true; }
    }, 15_000, () => `etcd to refuse revision ${oldRev} of ${key} (log: ${logs.join('')})`);
    assert.match(refusal, /required revision has been compacted/);
    // the agent logs it once its compaction call has returned, which can be after etcd refuses the revision
    await waitFor(() => logs.some((l) => l.includes('old IPsec keys removed from the registry history')), 10_000, () => `the removal logged (log: ${logs.join('')})`);
    assert.match(Buffer.from((await reg.get('Secret', 'ipsec-keys'))!.data!['keys']!, 'base64').toString(), /^4\+ /, 'the current key stays');
  } finally {
    mode.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});
