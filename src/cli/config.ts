// veil config: the agent configuration (`view`) and the known install settings (`keys`).
import { currentCluster, openRegistry } from '../control/cluster.js';
import { AGENT_CONFIGMAP } from '../agent/install-state.js';
import { SETTING_KEYS, defaultSettings, settingDoc } from '../agent/settings.js';
import { VeilError } from '../util/errors.js';
import { command, group } from './flags.js';
import { printStructured } from './output.js';
import { table } from '../util/text-table.js';

const view = command({
  name: 'veil config view',
  summary: "the agent configuration as sorted \"key  value\" lines (like 'cilium config view')",
  usage: ['veil config view [-o json|yaml] [--cluster NAME]'],
  about: "The agent configuration as sorted \"key  value\" lines (like 'cilium config view').",
  output: { choices: ['json', 'yaml'] },
  examples: ['veil config view | grep enable-ipsec', 'veil config view -o json'],
  async run({ values }) {
    const reg = openRegistry(currentCluster(values.cluster));
    try {
      const cm = await reg.get('ConfigMap', AGENT_CONFIGMAP);
      if (!cm) throw new VeilError('NOT_INSTALLED', 'veil is not installed on this cluster, so there is no configuration', "run 'veil install' first");
      const data = cm.data ?? {};
      if (values.output) { printStructured(data, values.output); return 0; }
      const keys = Object.keys(data).sort();
      const w = Math.max(...keys.map((k) => k.length));
      for (const k of keys) console.log(`${k.padEnd(w)}  ${data[k]}`);
      return 0;
    } finally {
      reg.close();
    }
  },
});

const keys = command({
  name: 'veil config keys',
  summary: "the settings 'veil install --set' accepts, with their defaults",
  usage: ['veil config keys'],
  about: "The settings 'veil install --set' accepts, with their defaults and what they do.",
  cluster: false,
  examples: ['veil config keys', 'veil install --encryption wireguard --set encryption.nodeEncryption=true'],
  run() {
    const d = defaultSettings() as unknown as Record<string, unknown>;
    console.log(table([['KEY', 'DEFAULT', 'DESCRIPTION'], ...SETTING_KEYS.map((k) => [k, String(d[k]), settingDoc(k)])]));
    return 0;
  },
});

export const { run } = group({
  name: 'veil config',
  commands: { view, keys },
  examples: ['veil config view | grep enable-ipsec', 'veil config view -o json', 'veil config keys'],
});
