// Underlay detection in a real network namespace: the route towards the registry, else the default
// route, and that interface's address and MTU. `ip route get` reads the table; nothing is sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const NS = `veil-tul-${process.pid}`;
const MODULE = fileURLToPath(new URL('../../src/host/underlay.js', import.meta.url));

function ip(...args: string[]): void {
  const r = spawnSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `ip ${args.join(' ')}: ${r.stderr}`);
}

/** Runs detectUnderlay inside the namespace; returns its result or its error's code and text. */
function detect(given: object, hosts: string[]): { ok?: unknown; code?: string; text?: string } {
  const script = `import(${JSON.stringify(MODULE)}).then((m) => { try { console.log(JSON.stringify({ ok: m.detectUnderlay(${JSON.stringify(given)}, ${JSON.stringify(hosts)}) })); } catch (e) { console.log(JSON.stringify({ code: e.code, text: e.describe ? e.describe() : String(e) })); } });`;
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { ok?: unknown; code?: string; text?: string };
}

before(() => {
  spawnSync('ip', ['netns', 'del', NS]);
  assert.equal(spawnSync('ip', ['netns', 'add', NS]).status, 0);
  // veth pairs (this kernel has no dummy links); both ends up, so each has a carrier
  ip('link', 'add', 'veil-up0', 'mtu', '9000', 'type', 'veth', 'peer', 'name', 'veil-up0p', 'mtu', '9000');
  ip('link', 'add', 'veil-up1', 'type', 'veth', 'peer', 'name', 'veil-up1p');
  ip('link', 'set', 'veil-up0p', 'up');
  ip('link', 'set', 'veil-up1p', 'up');
  ip('addr', 'add', '10.99.0.10/24', 'dev', 'veil-up0');
  ip('addr', 'add', 'fd00:99::10/64', 'dev', 'veil-up0', 'nodad'); // a dual-stack underlay
  ip('addr', 'add', '10.98.0.10/24', 'dev', 'veil-up1');
  ip('link', 'set', 'lo', 'up');
  ip('link', 'set', 'veil-up0', 'up');
  ip('link', 'set', 'veil-up1', 'up');
  ip('route', 'add', 'default', 'via', '10.98.0.1');
});
after(() => { spawnSync('ip', ['netns', 'del', NS]); });

test('the route to the registry picks the interface, its address and MTU; its global addresses of both families are listed', () => {
  assert.deepEqual(detect({}, ['10.99.0.5']).ok, { interface: 'veil-up0', address: '10.99.0.10', mtu: 9000, addresses: ['10.99.0.10', 'fd00:99::10'] });
});

test('a registry on loopback or by name falls back to the default route', () => {
  assert.deepEqual(detect({}, ['127.0.0.1', 'etcd.example']).ok, { interface: 'veil-up1', address: '10.98.0.10', mtu: 1500, addresses: ['10.98.0.10'] });
});

test('given fields win; wrong ones are refused with what to use', () => {
  assert.deepEqual(detect({ interface: 'veil-up1', mtu: 1400 }, ['10.99.0.5']).ok, { interface: 'veil-up1', address: '10.98.0.10', mtu: 1400, addresses: ['10.98.0.10'] });
  const missing = detect({ interface: 'veil-nope' }, []);
  assert.equal(missing.code, 'NO_UNDERLAY');
  assert.match(missing.text!, /'veil-nope' does not exist/);
  const wrong = detect({ interface: 'veil-up0', address: '10.98.0.10' }, []);
  assert.equal(wrong.code, 'NO_UNDERLAY');
  assert.match(wrong.text!, /10\.98\.0\.10 is not an address of 'veil-up0': use one of: 10\.99\.0\.10/);
});

test('no route at all: the agent is told to name the underlay', () => {
  ip('route', 'del', 'default');
  try {
    const r = detect({}, ['127.0.0.1']);
    assert.equal(r.code, 'NO_UNDERLAY');
    assert.match(r.text!, /no route to the registry and no default route.*underlay.interface/);
  } finally {
    ip('route', 'add', 'default', 'via', '10.98.0.1');
  }
});
