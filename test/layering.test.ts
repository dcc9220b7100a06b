// The source folders form layers, and imports only run down them: the CLI uses the operator views,
// they use the lab (which runs agents on its nodes, as a host's systemd would) and the agent, the
// agent the datapath, the datapath the protocol cores, and everything the
// utilities. A folder never imports one above it or beside it, so each layer can be read (and
// tested) without the ones above.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/** Higher imports lower; the same rank never imports across folders. */
const RANK: Record<string, number> = {
  util: 0,
  native: 1,
  crypto: 2, net: 2, control: 2,
  esp: 3, wireguard: 3,
  keys: 4, datapath: 4, host: 4,
  agent: 5,
  lab: 6,
  operator: 7, demo: 7,
  cli: 8,
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

test('layers: every import between source folders runs down the layers', () => {
  const files = sources(SRC);
  assert.ok(files.length > 50, `found the sources in ${SRC}`);
  const upward: string[] = [];
  for (const file of files) {
    const from = relative(SRC, file).split('/')[0]!;
    assert.ok(from in RANK, `src/${from} has a layer in RANK`);
    for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;]*?from '(\.\.\/[^']+)'/gms)) {
      const to = relative(SRC, join(file, '..', m[1]!)).split('/')[0]!;
      if (to === from) continue;
      assert.ok(to in RANK, `src/${to} (imported by ${relative(SRC, file)}) has a layer in RANK`);
      if (RANK[to]! >= RANK[from]!) upward.push(`src/${relative(SRC, file)} imports ${m[1]} (${from} ${RANK[from]} -> ${to} ${RANK[to]})`);
    }
  }
  assert.deepEqual(upward, []);
});
