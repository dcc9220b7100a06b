// veil config: the agent configuration (`view`) and the known install settings (`keys`).
import { parseArgs } from 'node:util';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { AGENT_CONFIGMAP } from '../agent/install-state.js';
import { SETTING_KEYS, defaultSettings, settingDoc } from '../agent/settings.js';
import { VeilError } from '../util/errors.js';
import { printStructured, type OutputFormat } from './output.js';
import { table } from '../util/text-table.js';

const HELP = `Usage: veil config view [-o json|yaml] [--cluster NAME]
       veil config keys

view: the agent configuration as sorted "key  value" lines (like 'cilium config view').
keys: the settings 'veil install --set' accepts, with their defaults.

Examples:
  veil config view | grep enable-ipsec
  veil config view -o json`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || !positionals.length) { console.log(HELP); return values.help ? 0 : 2; }
  const sub = positionals[0];
  if (sub === 'keys') {
    const d = defaultSettings() as unknown as Record<string, unknown>;
    console.log(table([['KEY', 'DEFAULT', 'DESCRIPTION'], ...SETTING_KEYS.map((k) => [k, String(d[k]), settingDoc(k)])]));
    return 0;
  }
  if (sub !== 'view') throw new VeilError('BAD_ARGS', `unknown subcommand 'config ${sub}'`, "use 'veil config view' or 'veil config keys'");
  const reg = openRegistry(currentCluster(values.cluster));
  try {
    const cm = await reg.get('ConfigMap', AGENT_CONFIGMAP);
    if (!cm) throw new VeilError('NOT_INSTALLED', 'veil is not installed on this cluster, so there is no configuration', "run 'veil install' first");
    const data = cm.data ?? {};
    if (values.output) { printStructured(data, values.output as OutputFormat); return 0; }
    const keys = Object.keys(data).sort();
    const w = Math.max(...keys.map((k) => k.length));
    for (const k of keys) console.log(`${k.padEnd(w)}  ${data[k]}`);
    return 0;
  } finally {
    reg.close();
  }
}
