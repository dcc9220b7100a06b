// The handshake messages' parsers keep their optimized code across a full collection that finds no
// message alive (messages.ts, KEPT_MESSAGE_SHAPES): V8 holds the map a constructor's writes lead to
// only weakly, and code that makes such objects was thrown away with it ('weak objects'). Checked in
// a child node with V8's natives (the test process has none): the parser optimized, then collected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const MESSAGES = new URL('../../src/wireguard/messages.js', import.meta.url).href;

/** In a child: `parse` optimized on messages sliced from a Buffer (as the engine does), then two full collections with none alive. */
function optimizedAcrossCollections(parse: 'parseResponse' | 'parseInitiation', type: number, size: number): { before: boolean; after: boolean } {
  const script = `
    import { ${parse} as parse } from ${JSON.stringify(MESSAGES)};
    const rx = Buffer.alloc(2048);
    rx[0] = ${type};
    function one() { const m = parse(Uint8Array.prototype.slice.call(rx, 0, ${size})); return typeof m === 'string' ? -1 : m.sender; }
    %NeverOptimizeFunction(one);
    %PrepareFunctionForOptimization(parse);
    for (let i = 0; i < 100; i++) one();
    %OptimizeFunctionOnNextCall(parse);
    one();
    const before = (%GetOptimizationStatus(parse) & 16) !== 0;
    gc(); gc();
    const after = (%GetOptimizationStatus(parse) & 16) !== 0;
    console.log(JSON.stringify({ before, after }));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim()) as { before: boolean; after: boolean };
}

test('a response parser optimized stays optimized through full collections with no response alive', () => {
  const r = optimizedAcrossCollections('parseResponse', 2, 92);
  assert.ok(r.before, 'optimized before the collections');
  assert.ok(r.after, 'still optimized after them');
});

test('an initiation parser optimized stays optimized through full collections with no initiation alive', () => {
  const r = optimizedAcrossCollections('parseInitiation', 1, 148);
  assert.ok(r.before, 'optimized before the collections');
  assert.ok(r.after, 'still optimized after them');
});
