// The agent's inputs as a Kubernetes pod gets them: the settings from the mounted ConfigMap
// (settings.json) and each Secret as a directory of files, one per key. The kubelet updates a
// mounted Secret by swapping a symlink (..data), never in place, so a read sees the old or the new
// content whole. The directory is watched (inotify sees the swap's rename at once) and polled
// slowly besides, which works on every volume type; with no watch (no such directory yet, a
// volume without inotify) it is polled every second.
import { readdirSync, readFileSync, statSync, watch as watchDir, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { RegistryObject, Watch } from '../control/registry.js';
import { VeilError, errorMessage } from '../util/errors.js';
import type { AgentInputs, SecretSource } from './agent-inputs.js';
import { defaultSettings, type Settings } from './settings.js';

/** The poll with no watch on the directory. */
const POLL_MS = 1000;
/** The poll beside a watch: a safety net (an idle agent woke every second for the poll alone). */
const WATCHED_POLL_MS = 10_000;
/** A swap is several directory events (new dir, symlink, rename, removal): one read after them. */
const SETTLE_MS = 20;

/** The secret in `dir` (one file per key; the kubelet's dot-entries skipped), or undefined if absent or empty. */
export function readMountedSecret(name: string, dir: string): RegistryObject | undefined {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((f) => !f.startsWith('.')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VeilError('SECRET_UNREADABLE', `cannot read the mounted secret ${name} at ${dir}: ${errorMessage(e)}`, 'check the DaemonSet\'s secret volume');
  }
  const data: Record<string, string> = {};
  for (const f of entries) {
    const p = join(dir, f);
    try {
      if (statSync(p).isFile()) data[f] = readFileSync(p).toString('base64');
    } catch { /* swapped away while listing: the next poll sees the new content */ }
  }
  if (!Object.keys(data).length) return undefined;
  return { kind: 'Secret', metadata: { name }, type: 'Opaque', data };
}

export class MountedSecrets implements SecretSource {
  private readonly stops = new Set<() => void>();

  /** dirs: secret name -> the directory it is mounted at. */
  constructor(private readonly dirs: Record<string, string>) {}

  private dir(name: string): string | undefined {
    return this.dirs[name];
  }

  async get(name: string): Promise<RegistryObject | undefined> {
    const dir = this.dir(name);
    return dir ? readMountedSecret(name, dir) : undefined;
  }

  async watch(name: string, onChange: (secret: RegistryObject | undefined) => void): Promise<Watch> {
    const dir = this.dir(name);
    let last = JSON.stringify(dir ? readMountedSecret(name, dir)?.data ?? null : null);
    const check = (): void => {
      if (!dir) return;
      let now: RegistryObject | undefined;
      try { now = readMountedSecret(name, dir); } catch { return; }
      const text = JSON.stringify(now?.data ?? null);
      if (text === last) return;
      last = text;
      onChange(now);
    };
    let settling: NodeJS.Timeout | undefined;
    let watcher: FSWatcher | undefined;
    let poll: NodeJS.Timeout | undefined;
    const pollEvery = (ms: number): void => { clearInterval(poll); poll = setInterval(check, ms); };
    try {
      if (dir) {
        watcher = watchDir(dir, { persistent: false }, () => { settling ??= setTimeout(() => { settling = undefined; check(); }, SETTLE_MS); });
        watcher.on('error', () => { watcher?.close(); watcher = undefined; pollEvery(POLL_MS); }); // the directory went: polled as without a watch
      }
    } catch { /* no such directory (yet), or no inotify there: the poll alone */ }
    if (dir) pollEvery(watcher ? WATCHED_POLL_MS : POLL_MS);
    const stop = (): void => { clearInterval(poll); clearTimeout(settling); watcher?.close(); this.stops.delete(stop); };
    this.stops.add(stop);
    return { stop };
  }

  close(): void {
    for (const stop of [...this.stops]) stop();
  }
}

/** settings.json of the mounted install ConfigMap, over the defaults. */
export function readSettingsFile(file: string): Settings {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new VeilError('NOT_INSTALLED', `cannot read the settings ${file}: ${errorMessage(e)}`, "install veil with 'veil install --kubernetes' (it creates the ConfigMap veil-install the DaemonSet mounts)");
  }
  try {
    return { ...defaultSettings(), ...(JSON.parse(text) as Partial<Settings>) };
  } catch (e) {
    throw new VeilError('BAD_SETTINGS', `the settings ${file} are not JSON: ${errorMessage(e)}`, "re-apply them with 'veil install --kubernetes'");
  }
}

export function mountedInputs(settingsFile: string, secretDirs: Record<string, string>): AgentInputs {
  const secrets = new MountedSecrets(secretDirs);
  return { settings: async () => readSettingsFile(settingsFile), secrets, close: () => secrets.close() };
}
