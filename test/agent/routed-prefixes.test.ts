// RoutedPrefixes: what a pass steers into the tunnel and releases, from the mode's list of routes.
// Applied as the tunnel applies them (steer, then release), pass after pass, the routing table must
// hold exactly the pass's prefixes with their last source, and a pass that routes the same moves nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoutedPrefixes } from '../../src/agent/routed-prefixes.js';
import type { TunnelPrefix } from '../../src/agent/tunnel.js';

/** What the routes say the table should hold: each prefix's last source. */
function wanted(routes: readonly TunnelPrefix[]): Map<string, string | undefined> {
  const m = new Map<string, string | undefined>();
  for (const r of routes) typeof r === 'string' ? m.set(r, undefined) : m.set(r.prefix, r.src);
  return m;
}

test('pass after pass the table holds exactly the routes wanted, and a pass that routes the same moves nothing', () => {
  let seed = 7;
  const rand = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n; };
  const routed = new RoutedPrefixes();
  const table = new Map<string, string | undefined>();
  let routes: TunnelPrefix[] = [];
  for (let pass = 0; pass < 300; pass++) {
    const kind = rand(4);
    if (kind === 0) routes = routes.slice(); // the same routes in another array
    else if (kind === 1) { /* the same array */ }
    else {
      routes = Array.from({ length: rand(12) }, () => {
        const prefix = `10.0.${rand(8)}.0/24`; // a prefix twice now and then, with another source or none
        return rand(3) === 0 ? { prefix, src: `192.0.2.${rand(3)}` } : prefix;
      });
    }
    const before = new Map(table);
    const { steer, stale } = routed.update(routes);
    for (const r of steer) table.set(r.prefix, r.src);
    for (const p of stale) table.delete(p);
    assert.deepEqual(table, wanted(routes), `pass ${pass}`);
    if (kind < 2) assert.deepEqual([steer, stale], [[], []], `pass ${pass}: the same routes moved something`);
    // nothing steered that was in place already
    for (const r of steer) assert.ok(!before.has(r.prefix) || before.get(r.prefix) !== r.src, `pass ${pass}: ${r.prefix} steered again`);
    assert.deepEqual(routed.prefixes(), new Set(table.keys()));
  }
});
