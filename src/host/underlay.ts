// What a host agent learns from the host itself: the underlay interface, its address and MTU (the
// route the kernel would take to the registry, else the default route), and the boot id.
// `ip route get` only asks the routing table; nothing is sent.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { VeilError, errorMessage } from '../util/errors.js';
import { run } from '../util/exec.js';

export const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

export interface Underlay {
  interface: string;
  address: string;
  mtu: number;
  /** Every global address of the interface (a dual-stack node has one of each family). */
  addresses?: string[];
}

interface IpRoute { dev?: string; prefsrc?: string; type?: string }
interface IpAddrInfo { family: string; local: string; scope: string }
interface IpLink { ifname: string; mtu: number; addr_info?: IpAddrInfo[] }

function ipJson<T>(args: string[]): T | undefined {
  const r = run(['ip', '-j', ...args]);
  if (r.status !== 0) return undefined;
  try { return JSON.parse(r.stdout) as T; } catch { return undefined; }
}

/** The interface (and source address) the kernel would use towards `host`, if it is an address. */
function routeTo(host: string): IpRoute | undefined {
  if (isIP(host) === 0) return undefined;
  const route = ipJson<IpRoute[]>(['route', 'get', host])?.[0];
  // A registry on this very host (loopback) says nothing about the underlay.
  if (!route?.dev || route.type === 'local' || route.dev === 'lo') return undefined;
  return route;
}

function defaultRoute(): IpRoute | undefined {
  return ipJson<IpRoute[]>(['route', 'show', 'default'])?.find((r) => r.dev);
}

function link(dev: string): IpLink {
  const l = ipJson<IpLink[]>(['addr', 'show', 'dev', dev])?.[0];
  if (!l) throw new VeilError('NO_UNDERLAY', `the underlay interface '${dev}' does not exist`, "name one that 'ip link' shows (underlay.interface)");
  return l;
}

/**
 * The underlay: given fields win; the rest is detected from the route towards the first registry
 * endpoint host (or the default route) and that interface's first global address.
 */
export function detectUnderlay(given: Partial<Underlay>, registryHosts: string[]): Underlay {
  let dev = given.interface;
  let src: string | undefined;
  if (!dev) {
    const route = registryHosts.map(routeTo).find((r) => r !== undefined) ?? defaultRoute();
    if (!route?.dev) {
      throw new VeilError('NO_UNDERLAY', 'cannot find the underlay interface: no route to the registry and no default route',
        'name it in the agent config (underlay.interface and underlay.address)');
    }
    dev = route.dev;
    src = route.prefsrc;
  }
  const l = link(dev);
  const addresses = (l.addr_info ?? []).filter((a) => a.scope === 'global');
  const address = given.address ?? src ?? addresses.find((a) => a.family === 'inet')?.local ?? addresses[0]?.local;
  if (!address) throw new VeilError('NO_UNDERLAY', `the underlay interface '${dev}' has no global address`, 'give underlay.address in the agent config, or give the interface an address');
  if (given.address && !addresses.some((a) => a.local === given.address)) {
    throw new VeilError('NO_UNDERLAY', `${given.address} is not an address of '${dev}'`, `use one of: ${addresses.map((a) => a.local).join(', ') || '(none)'}`);
  }
  return { interface: dev, address, mtu: given.mtu ?? l.mtu, addresses: addresses.map((a) => a.local) };
}

/** The kernel's boot id: a new one after every reboot, which tells peers to forget old sessions. */
export function readBootID(file = BOOT_ID_FILE): string {
  try {
    return readFileSync(file, 'utf8').trim().toLowerCase();
  } catch (e) {
    throw new VeilError('NO_BOOT_ID', `cannot read the boot id from ${file}: ${errorMessage(e)}`, 'the agent needs a Linux /proc');
  }
}

/** The interface holding `address` (a Kubernetes Node's InternalIP), with its MTU. */
export function underlayWithAddress(address: string): Underlay {
  const links = ipJson<IpLink[]>(['addr', 'show']) ?? [];
  const l = links.find((x) => (x.addr_info ?? []).some((a) => a.local === address));
  if (!l) throw new VeilError('NO_UNDERLAY', `no interface of this host has the node's InternalIP ${address}`, 'the agent must run in the host network namespace (hostNetwork: true) of the node it is named after');
  return { interface: l.ifname, address, mtu: l.mtu };
}
