// The prefixes a tunnel last routed, and what a pass changes of them: sans-I/O (the tunnel steers
// and releases what update() returns). They are kept as the mode's own list of the last pass (a
// mode hands back the same array while its routes are the same: kept-list.ts), not in a map of
// their own: a map by prefix held every peer's pod CIDR again (~50 B a peer at 5,000). A pass that
// routes the same (nearly every one) is one comparison; one that moves a route compares the two
// lists through two maps made for it (garbage, a pass that adds or removes a node).
import { routePrefix, routeSource } from './routes.js';
import type { TunnelPrefix } from './tunnel.js';

/** What one pass changes: the routes to steer (new, or with a new source), the prefixes no longer routed. */
export interface RouteChanges { steer: { prefix: string; src?: string }[]; stale: string[] }

/** Each prefix's source (undefined: none); a prefix twice, its last source wins. */
function sourcesOf(routes: readonly TunnelPrefix[]): Map<string, string | undefined> {
  const m = new Map<string, string | undefined>();
  for (let i = 0; i < routes.length; i++) m.set(routePrefix(routes[i]!), routeSource(routes[i]!));
  return m;
}

export class RoutedPrefixes {
  private last: readonly TunnelPrefix[] = [];

  /** Pass `routes` is wanted now (an array never changed afterwards: it is kept as it is); returns what differs from the last one. */
  update(routes: readonly TunnelPrefix[]): RouteChanges {
    const steer: RouteChanges['steer'] = [], stale: string[] = [];
    if (routes === this.last) return { steer, stale };
    const was = sourcesOf(this.last), now = sourcesOf(routes);
    now.forEach((src, prefix) => {
      if (!was.has(prefix) || was.get(prefix) !== src) steer.push(src === undefined ? { prefix } : { prefix, src });
    });
    was.forEach((_, prefix) => { if (!now.has(prefix)) stale.push(prefix); });
    this.last = routes;
    return { steer, stale };
  }

  /** The prefixes routed now (a whole pass tells the device's other routes by it): a set made when asked. */
  prefixes(): Set<string> {
    return new Set(this.last.map(routePrefix));
  }
}
