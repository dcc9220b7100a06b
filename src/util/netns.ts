// Which named network namespace (`ip netns`) this process runs in.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const NETNS_DIR = '/run/netns';

/** The `ip netns` name of this process's network namespace, or undefined (the host's own, or unnamed). */
export function currentNamedNetns(): string | undefined {
  let self;
  try { self = statSync('/proc/self/ns/net'); } catch { return undefined; }
  let names: string[];
  try { names = readdirSync(NETNS_DIR); } catch { return undefined; }
  for (const name of names) {
    try {
      const st = statSync(join(NETNS_DIR, name));
      if (st.ino === self.ino && st.dev === self.dev) return name;
    } catch { /* deleted meanwhile */ }
  }
  return undefined;
}
