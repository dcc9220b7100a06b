// veil demo: the seed tutorial, run for real on a fresh local lab (README's main job).
import { Tutorial } from '../demo/tutorial.js';
import { checkClusterName } from '../control/cluster.js';
import { command } from './flags.js';

export const { run } = command({
  name: 'veil demo',
  usage: ['veil demo [--name kind] [--keep]'],
  about: `Walks through the encryption tutorial on a fresh 4-node lab cluster, printing every command and
what it shows and checking each result: IPsec with a pre-shared key, a capture showing only ESP,
a key rotation under traffic that loses no packet, then WireGuard with generated keys, captures
inside and outside the tunnel, and 'veil verify'. Needs root. Takes about two minutes.`,
  cluster: false,
  flags: {
    name: { type: 'string', value: 'NAME', default: 'kind', help: "the lab cluster's name (default kind; must not exist yet)" },
    keep: { type: 'boolean', default: false, help: 'leave the lab up at the end to explore it' },
  },
  examples: ['sudo npx veil demo', 'sudo npx veil demo --keep && veil status'],
  async run({ values }) {
    const tutorial = new Tutorial({ cluster: checkClusterName(values.name!), keep: values.keep!, out: (l) => console.log(l) });
    let ok = false;
    const interrupted = () => { tutorial.teardown(); process.exit(130); };
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    try {
      await tutorial.run();
      ok = true;
      return 0;
    } finally {
      if (ok || !values.keep) tutorial.teardown();
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
    }
  },
});
