// The Dockerfile, checked statically (no image registry is reachable here, so it is not built): it
// lints clean, has a build stage and a slim Node runtime stage, copies only what exists in the
// repository or what the build produces, installs every program the agent runs, and puts `veil`
// on the PATH as the DaemonSet's command expects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { validate } from 'dockerfile-utils';
import { IMAGE_CLI, renderManifests } from '../../src/agent/kubernetes-manifests.js';
import { defaultSettings } from '../../src/agent/settings.js';

const TEXT = readFileSync('Dockerfile', 'utf8');

interface Instruction { keyword: string; args: string }
interface Stage { from: string; name?: string; instructions: Instruction[] }

function stages(text: string): Stage[] {
  const out: Stage[] = [];
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of logical) {
    const [, keyword, args] = /^(\S+)\s+(.*)$/.exec(line)!;
    if (keyword!.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args!)!;
      out.push({ from: m[1]!, name: m[2], instructions: [] });
    } else out.at(-1)!.instructions.push({ keyword: keyword!.toUpperCase(), args: args! });
  }
  return out;
}

/** The programs the agent's code runs (run(['ip', ...]) and the like) under src/ outside the lab and CLI. */
function programsTheAgentRuns(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) { if (!['lab', 'cli', 'demo', 'operator'].includes(e)) walk(p); continue; }
      for (const m of readFileSync(p, 'utf8').matchAll(/\brun\(\['([a-z0-9-]+)'/g)) found.add(m[1]!);
    }
  };
  walk('src');
  return found;
}

const DEBIAN_PACKAGE: Record<string, string> = { ip: 'iproute2', sysctl: 'procps' };

test('the Dockerfile lints clean', () => {
  const problems = validate(TEXT).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  assert.deepEqual(problems, []);
});

test('two stages: the build on a full Node image, the runtime on the slim one of the same Node major', () => {
  const [build, runtime, ...rest] = stages(TEXT);
  assert.equal(rest.length, 0);
  assert.match(build!.from, /^node:(\d+)-bookworm$/);
  assert.match(runtime!.from, /^node:(\d+)-bookworm-slim$/);
  const major = (s: string) => Number(/^node:(\d+)/.exec(s)![1]);
  assert.equal(major(build!.from), major(runtime!.from));
  const engines = JSON.parse(readFileSync('package.json', 'utf8')).engines.node as string;
  assert.ok(major(runtime!.from) >= Number(/\d+/.exec(engines)![0]), `Node ${major(runtime!.from)} satisfies engines ${engines}`);
  assert.ok(build!.instructions.some((i) => i.keyword === 'RUN' && /npm ci/.test(i.args)), 'the build stage runs npm ci (TypeScript and the addon)');
  assert.ok(!runtime!.instructions.some((i) => i.keyword === 'RUN' && /\bnpm\b|g\+\+|make/.test(i.args)), 'no build tools in the runtime');
});

test('COPY takes what exists: repository files in the build stage, build outputs in the runtime', () => {
  const [build, runtime] = stages(TEXT);
  for (const i of build!.instructions.filter((x) => x.keyword === 'COPY')) {
    const words = i.args.split(/\s+/);
    for (const src of words.slice(0, -1)) assert.ok(existsSync(src), `build stage: COPY ${src} exists in the repository`);
  }
  const copies = runtime!.instructions.filter((x) => x.keyword === 'COPY');
  assert.ok(copies.length >= 4);
  for (const i of copies) {
    const m = /^--from=(\S+)\s+\/src\/(\S+)\s+\S+$/.exec(i.args);
    assert.ok(m && m[1] === build!.name, `runtime COPY comes from the build stage: ${i.args}`);
    assert.ok(existsSync(m[2]!), `the build produces ${m[2]} (npm ci here made it too)`);
  }
  const copied = copies.map((i) => i.args);
  assert.ok(copied.some((a) => a.includes('build/Release/veil_datapath.node')), 'the native addon');
  assert.ok(copied.some((a) => a.includes('/src/dist/src ')), 'the compiled agent');
});

test('the runtime installs every program the agent runs, has the CLI where the DaemonSet runs it, and veil on the PATH', () => {
  const runtime = stages(TEXT)[1]!;
  const installs = runtime.instructions.filter((i) => i.keyword === 'RUN' && /apt-get install/.test(i.args)).map((i) => i.args).join(' ');
  for (const prog of programsTheAgentRuns()) {
    const pkg = DEBIAN_PACKAGE[prog];
    assert.ok(pkg, `the Debian package of '${prog}' (which the agent runs) is known to this test`);
    assert.match(installs, new RegExp(`\\b${pkg}\\b`), `the runtime installs ${pkg} for '${prog}'`);
  }
  const link = /ln -s (\S+) \/usr\/local\/bin\/veil/.exec(runtime.instructions.map((i) => i.args).join('\n'));
  assert.ok(link, 'veil is linked into /usr/local/bin');
  assert.equal(link![1], IMAGE_CLI);
  assert.match(readFileSync('dist/src/cli/main.js', 'utf8').split('\n')[0]!, /^#!\/usr\/bin\/env node/);
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args.split(/\s+/).at(-1)!);
  assert.ok(copies.includes('./dist/src') && /^WORKDIR \/opt\/veil$/m.test(TEXT), 'the compiled CLI lands under /opt/veil/dist/src');
  const ds = renderManifests({ settings: defaultSettings() }).find((m) => m.kind === 'DaemonSet') as unknown as { spec: { template: { spec: { containers: { command: string[] }[] } } } };
  const command = ds.spec.template.spec.containers[0]!.command;
  assert.equal(command[0], 'node', 'the Node image has node on its PATH');
  assert.ok(command.includes(IMAGE_CLI), `the DaemonSet runs the image's CLI: ${command.join(' ')}`);
});
