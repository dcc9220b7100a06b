// Everything veil installed in a node's network, removed: the tunnel devices (their routes go with
// them), the plaintext routes the tunnel replaced put back first, then the fail-closed blackholes
// and the bypass rule. The lab's uninstall runs it in each node's namespace; a host agent runs it on
// its own host when the cluster's install settings are deleted (an uninstall, or a failed install
// rolled back). Never half encrypted: while the routes are put back the blackholes still drop.
import { run } from '../util/exec.js';
import { FAIL_CLOSED_METRIC, releaseTunnelBypass } from './routes.js';
import { TUNNEL_DEVICES } from './installer.js';
import { WG_PORT } from './wireguard-mode.js';
import { restoreReplacedRoutes } from './replaced-routes.js';

/**
 * Every fail-closed blackhole, whatever node object it was made for: the object may be gone
 * (deleted, or a hostile one), and what veil installed it must be able to remove.
 */
function failClosedRoutes(netns?: string): { family: '-4' | '-6'; dst: string }[] {
  const out: { family: '-4' | '-6'; dst: string }[] = [];
  for (const family of ['-4', '-6'] as const) {
    const r = run(['ip', ...(netns ? ['-n', netns] : []), family, '-j', 'route', 'show', 'type', 'blackhole']);
    if (r.status !== 0 || !r.stdout.trim()) continue;
    for (const e of JSON.parse(r.stdout) as { dst: string; metric?: number }[]) {
      if (e.metric === FAIL_CLOSED_METRIC) out.push({ family, dst: e.dst });
    }
  }
  return out;
}

/** Removes veil's devices, rules and blackholes (netns: there, with ip -n); replacedRoutesFile: routes to put back. Returns routes it could not put back. */
export function removeTunnelState(o: { netns?: string; replacedRoutesFile?: string } = {}): string[] {
  const ip = ['ip', ...(o.netns ? ['-n', o.netns] : [])];
  for (const dev of TUNNEL_DEVICES) run([...ip, 'link', 'del', dev]);
  const failed = o.replacedRoutesFile ? restoreReplacedRoutes(o.replacedRoutesFile, o.netns) : [];
  releaseTunnelBypass(WG_PORT, o.netns); // only WireGuard's node encryption adds the bypass rule
  for (const r of failClosedRoutes(o.netns)) run([...ip, r.family, 'route', 'del', 'blackhole', r.dst, 'metric', String(FAIL_CLOSED_METRIC)]);
  return failed;
}
