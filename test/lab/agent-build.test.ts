// Which build a lab node's agent runs (the lab's ExecStart): a directory is taken as a build only
// when it is one (veil's package.json, a built dist/, the native addon), each refusal says what is
// missing and what to do; the recorded build is what the supervisor starts, else this one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentBuildOf, buildMainJs, checkBuild, ownBuild, recordAgentBuild } from '../../src/lab/agent-build.js';
import { VeilError } from '../../src/util/errors.js';

test('a build is checked before a node is restarted into it; the recorded one is what the agent starts from', () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-t-build-'));
  try {
    const dir = join(home, 'veil-next');
    const refused = (pattern: RegExp) => assert.throws(() => checkBuild(dir), (e: unknown) => e instanceof VeilError && e.code === 'NOT_A_BUILD' && pattern.test(e.message + ' ' + e.hint), String(pattern));
    refused(/no package.json named veil there.*root of a veil checkout/);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'other', version: '1.0.0' }));
    refused(/no package.json named veil/);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'veil', version: '9.9.9' }));
    refused(/is not built: .*main\.js is missing.*npm run build/);
    mkdirSync(join(dir, 'dist', 'src', 'cli'), { recursive: true });
    writeFileSync(buildMainJs(dir), '');
    refused(/no native addon: .*veil_datapath\.node is missing.*npm ci/);
    symlinkSync(join(ownBuild(), 'build'), join(dir, 'build'));
    assert.deepEqual(checkBuild(join(dir, '.')), { root: dir, version: '9.9.9' });

    const nodeDir = join(home, 'node');
    assert.equal(agentBuildOf(nodeDir), ownBuild(), 'nothing recorded: this build');
    recordAgentBuild(nodeDir, dir);
    assert.equal(agentBuildOf(nodeDir), dir);
    assert.equal(checkBuild(ownBuild()).root, ownBuild());
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
