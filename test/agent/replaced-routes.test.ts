// The routes a steer replaces, recorded once per prefix before the first steer (for an uninstall to
// put back): read from this namespace's real table (read only), kept across a restart, never
// recorded again for a prefix the record holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mustRun } from '../../src/util/exec.js';
import { routeWatchNetns } from './fixtures/route-watch-netns.js';
import { ReplacedRoutes, type ShownRoute } from '../../src/agent/replaced-routes.js';

test('each prefix recorded once, from the table, across restarts; a prefix the record holds reads nothing and writes nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-rr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'replaced-routes.json');
  const read = () => JSON.parse(readFileSync(file, 'utf8')) as Record<string, ShownRoute[]>;
  // A route this namespace has (a connected one), and prefixes it has none for.
  const shown = JSON.parse(mustRun(['ip', '-4', '-j', 'route', 'show', 'table', 'main'])) as ShownRoute[];
  const held = shown.find((r) => r.dst !== 'default' && r.dst.includes('/') && r.dev);
  const none = ['10.254.254.0/24', '10.254.253.0/24', '10.254.252.0/24'].filter((p) => !shown.some((r) => r.dst === p));
  assert.ok(none.length >= 3, 'test prefixes free in this namespace');

  new ReplacedRoutes(file, 'veil-none0').recordBefore([...(held ? [held.dst] : []), none[0]!, none[0]!]);
  const first = read();
  assert.deepEqual(first[none[0]!], [], 'a prefix without a route: recorded, with nothing to put back');
  if (held) assert.ok(first[held.dst]!.some((r) => r.dst === held.dst && r.dev === held.dev), `the host's route recorded: ${JSON.stringify(first[held.dst])}`);

  // A run before this one recorded a route for none[1]: a restarted agent keeps it as it was.
  writeFileSync(file, JSON.stringify({ ...first, [none[1]!]: [{ dst: none[1]!, gateway: '192.0.2.9', dev: 'eth9' }] }) + '\n');
  const before = readFileSync(file, 'utf8'), mtime = statSync(file).mtimeMs;
  const restarted = new ReplacedRoutes(file, 'veil-none0');
  restarted.recordBefore([none[1]!, none[0]!, ...(held ? [held.dst] : [])]);
  assert.equal(readFileSync(file, 'utf8'), before, 'every prefix recorded already: the record as it was');
  assert.equal(statSync(file).mtimeMs, mtime, 'and not written');

  restarted.recordBefore([none[2]!, none[1]!]);
  const last = read();
  assert.deepEqual(last[none[2]!], [], 'a new prefix recorded');
  assert.deepEqual(last[none[1]!], [{ dst: none[1]!, gateway: '192.0.2.9', dev: 'eth9' }], 'the earlier run\'s record kept');
  assert.deepEqual(Object.keys(last).sort(), [...(held ? [held.dst] : []), ...none].sort());
});

test('the table is read once for many steers and again only when the host\'s routes moved: a new host route or blackhole, not the tunnel\'s routes and fail-closed blackholes', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-rr-'));
  const net = routeWatchNetns('rr', 83);
  try {
    // The record watches its own netns: it runs in a node process inside it, which reports each step.
    const script = `
      import { ReplacedRoutes } from ${JSON.stringify(new URL('../../src/agent/replaced-routes.js', import.meta.url).href)};
      import { steerIntoTunnel } from ${JSON.stringify(new URL('../../src/agent/routes.js', import.meta.url).href)};
      import { mustRun } from ${JSON.stringify(new URL('../../src/util/exec.js', import.meta.url).href)};
      import { readFileSync } from 'node:fs';
      const file = ${JSON.stringify(join(dir, 'replaced-routes.json'))};
      const r = new ReplacedRoutes(file, 'veil_ipsec0');
      const out = { steps: [] };
      const step = (what, prefixes) => {
        const before = r.tableReads;
        r.recordBefore(prefixes);
        steerIntoTunnel(prefixes.map((prefix) => ({ prefix, device: 'veil_ipsec0' })));
        r.afterSteering(); // as the tunnel does
        out.steps.push({ what, read: r.tableReads > before });
      };
      step('the first steer', ['10.101.1.0/24', '10.101.2.0/24']);
      step('more peers, nothing else moved', ['10.101.3.0/24']);
      // A burst (a cluster's first convergence): 2,000 notifications of the tunnel's own, more than a
      // default socket buffer holds; a lost one would count as a change.
      step('a burst of 1,000 peers', Array.from({ length: 1000 }, (_, i) => \`10.120.\${i >> 4}.\${(i & 15) << 4}/28\`));
      step('the pass after the burst', ['10.101.7.0/24']);
      mustRun(['ip', 'route', 'add', '10.101.4.0/24', 'via', '10.83.0.9']);
      step('a host route for the next prefix', ['10.101.4.0/24']);
      mustRun(['ip', 'route', 'add', 'blackhole', '10.101.5.0/24', 'metric', '7']);
      step('a host blackhole for the next prefix', ['10.101.5.0/24']);
      mustRun(['ip', 'route', 'add', '10.101.9.0/24', 'dev', 'veil_ipsec0']);
      mustRun(['ip', 'route', 'add', 'blackhole', '10.101.9.0/24', 'metric', '4242']);
      step('only the tunnel\\'s own routes moved', ['10.101.6.0/24']);
      r.close();
      out.record = JSON.parse(readFileSync(file, 'utf8'));
      console.log(JSON.stringify(out));`;
    const out = net.runIn<{ steps: { what: string; read: boolean }[]; record: Record<string, ShownRoute[]> }>(script);
    assert.deepEqual(out.steps.map((s) => [s.what, s.read]), [
      ['the first steer', true], ['more peers, nothing else moved', false], ['a burst of 1,000 peers', false], ['the pass after the burst', false],
      ['a host route for the next prefix', true],
      ['a host blackhole for the next prefix', true], ['only the tunnel\'s own routes moved', false],
    ]);
    assert.deepEqual(out.record['10.101.3.0/24'], [], 'a prefix with no host route, recorded from the kept table');
    assert.ok(out.record['10.101.4.0/24']!.some((r) => r.gateway === '10.83.0.9'), `the new host route recorded: ${JSON.stringify(out.record['10.101.4.0/24'])}`);
    assert.ok(out.record['10.101.5.0/24']!.some((r) => r.type === 'blackhole' && r.metric === 7), `the host's blackhole recorded: ${JSON.stringify(out.record['10.101.5.0/24'])}`);
    assert.deepEqual(Object.keys(out.record).filter((p) => !p.startsWith('10.120.')).sort(), ['10.101.1.0/24', '10.101.2.0/24', '10.101.3.0/24', '10.101.4.0/24', '10.101.5.0/24', '10.101.6.0/24', '10.101.7.0/24']);
    assert.equal(Object.keys(out.record).filter((p) => p.startsWith('10.120.')).length, 1000, 'every prefix of the burst recorded');
  } finally {
    net.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
