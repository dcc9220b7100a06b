// The routes a steer replaces, recorded once per prefix before the first steer (for an uninstall to
// put back): read from this namespace's real table (read only), kept across a restart, never
// recorded again for a prefix the record holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mustRun } from '../../src/util/exec.js';
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
