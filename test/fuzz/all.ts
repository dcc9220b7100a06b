// Every fuzz harness, in the order `npm run fuzz` runs them.
import type { Harness } from './harness.js';
import { harnesses as wireguard } from './wireguard.fuzz.js';
import { harnesses as esp } from './esp.fuzz.js';
import { harnesses as ip } from './ip.fuzz.js';
import { harnesses as keys } from './keys.fuzz.js';
import { harnesses as registry } from './registry.fuzz.js';
import { harnesses as config } from './config.fuzz.js';
import { harnesses as flags } from './flags.fuzz.js';

export const allHarnesses: Harness[] = [...wireguard, ...esp, ...ip, ...keys, ...registry, ...config, ...flags];
