// Which veil build a lab node's agent runs: the lab's ExecStart. A host upgrades by installing the
// new package and restarting the service (systemctl restart); the lab records, per node, the
// package root whose dist/ the supervisor starts, read again at every start, so an upgrade (or a
// downgrade) is a restart into another build: `veil agent restart NODE --build DIR`. The datapath is
// handed over when both builds read the same snapshot version; otherwise the new agent starts cold.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot, ADDON_RELATIVE_PATH } from '../native/addon.js';
import { writePrivateFile } from '../util/private-files.js';
import { VeilError } from '../util/errors.js';

/** A veil build: its package root and the version its package.json says. */
export interface VeilBuild {
  root: string;
  version: string;
}

const RECORD = 'agent-build';

/** The CLI's program inside a build. */
export function buildMainJs(root: string): string {
  return join(root, 'dist', 'src', 'cli', 'main.js');
}

/** This process's own build. */
export function ownBuild(): string {
  return packageRoot();
}

/** DIR as a build an agent can run from, or a VeilError saying what is missing there. */
export function checkBuild(dir: string): VeilBuild {
  const root = resolve(dir);
  let version: string | undefined;
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'veil') version = pkg.version ?? 'unknown';
  } catch { /* named below */ }
  if (version === undefined) throw new VeilError('NOT_A_BUILD', `${root} is not a veil build: no package.json named veil there`, 'give the root of a veil checkout or package (the folder with its package.json)');
  if (!existsSync(buildMainJs(root))) throw new VeilError('NOT_A_BUILD', `${root} is not built: ${buildMainJs(root)} is missing`, `run 'npm run build' in ${root}`);
  if (!existsSync(join(root, ADDON_RELATIVE_PATH))) throw new VeilError('NOT_A_BUILD', `${root} has no native addon: ${join(root, ADDON_RELATIVE_PATH)} is missing`, `run 'npm ci' in ${root}`);
  return { root, version };
}

/** Records the build the node's next agent starts from (the node's state dir). */
export function recordAgentBuild(nodeDir: string, root: string): void {
  writePrivateFile(join(nodeDir, RECORD), root + '\n');
}

/** The build the node's agent starts from: the recorded one, else this process's own. */
export function agentBuildOf(nodeDir: string): string {
  try {
    const recorded = readFileSync(join(nodeDir, RECORD), 'utf8').trim();
    if (recorded) return recorded;
  } catch { /* none recorded */ }
  return ownBuild();
}
