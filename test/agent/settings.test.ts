// Install settings: the datapath's crypto threads and priority are validated and rendered like every other key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applySet, defaultSettings, renderConfig } from '../../src/agent/settings.js';
import { isVeilError } from '../../src/util/errors.js';

test('datapath.cryptoThreads defaults to 1, takes 1..8, and shows in the agent config', () => {
  const s = defaultSettings();
  assert.equal(s['datapath.cryptoThreads'], 1);
  applySet(s, 'datapath.cryptoThreads=4');
  assert.equal(s['datapath.cryptoThreads'], 4);
  assert.equal(renderConfig(s)['datapath-crypto-threads'], '4');
  for (const bad of ['0', '9', '1.5', 'two', '']) {
    assert.throws(() => applySet(s, `datapath.cryptoThreads=${bad}`),
      (e) => isVeilError(e) && e.message === `datapath.cryptoThreads must be a whole number from 1 to 8, not "${bad}"`);
  }
  assert.equal(s['datapath.cryptoThreads'], 4, 'a refused value leaves the old one');
});

test('datapath.realtime defaults to true, takes true or false, and shows in the agent config', () => {
  const s = defaultSettings();
  assert.equal(s['datapath.realtime'], true);
  assert.equal(renderConfig(s)['datapath-realtime'], 'true');
  applySet(s, 'datapath.realtime=false');
  assert.equal(s['datapath.realtime'], false);
  assert.equal(renderConfig(s)['datapath-realtime'], 'false');
  assert.throws(() => applySet(s, 'datapath.realtime=off'), (e) => isVeilError(e) && e.message === 'datapath.realtime must be true or false, not "off"');
});

test('a misspelt datapath key gets a suggestion', () => {
  assert.throws(() => applySet(defaultSettings(), 'datapath.cryptoThread=2'),
    (e) => isVeilError(e) && e.hint === 'did you mean "datapath.cryptoThreads"?');
});

test('datapath.priority defaults to nice -10, takes -20..19, and shows in the agent config', () => {
  const s = defaultSettings();
  assert.equal(s['datapath.priority'], -10);
  applySet(s, 'datapath.priority=0');
  assert.equal(s['datapath.priority'], 0);
  assert.equal(renderConfig(s)['datapath-priority'], '0');
  for (const bad of ['-21', '20', '-1.5', 'high', '']) {
    assert.throws(() => applySet(s, `datapath.priority=${bad}`),
      (e) => isVeilError(e) && e.message === `datapath.priority must be a whole number from -20 to 19 (a nice value), not "${bad}"`);
  }
  assert.equal(s['datapath.priority'], 0, 'a refused value leaves the old one');
});
