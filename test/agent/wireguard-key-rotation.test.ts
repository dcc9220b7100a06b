// When a node starts a WireGuard key rotation: a rotate-key request it has not acted on, else a
// key older than encryption.wireguard.keyRotationInterval (the rotation itself is the same for
// both, end to end in test/e2e/wireguard-rotation.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rotationDue } from '../../src/agent/wireguard-key-rotation.js';
import { applySet, defaultSettings, parseDuration } from '../../src/agent/settings.js';

test('a pending request starts a rotation at once; the schedule only once the key is older than the interval; 0s is no schedule', () => {
  const hour = 3_600_000;
  assert.equal(rotationDue('req-1', 0, 0, 10), 'request req-1');
  assert.equal(rotationDue('req-1', hour, 1000, 1001), 'request req-1', 'a request does not wait for the schedule');
  assert.equal(rotationDue(undefined, 0, 0, 10 * hour), undefined, '0s: no schedule');
  assert.equal(rotationDue(undefined, hour, 1000, 1000 + hour - 1), undefined);
  assert.match(rotationDue(undefined, hour, 1000, 1000 + hour)!, /^schedule/);
});

test('encryption.wireguard.keyRotationInterval is a duration setting, off by default', () => {
  const s = defaultSettings();
  assert.equal(parseDuration(s['encryption.wireguard.keyRotationInterval']), 0);
  applySet(s, 'encryption.wireguard.keyRotationInterval=24h');
  assert.equal(parseDuration(s['encryption.wireguard.keyRotationInterval']), 24 * 3_600_000);
  assert.throws(() => applySet(s, 'encryption.wireguard.keyRotationInterval=daily'), /invalid duration/);
});
