// `veil agent run --config FILE`: the agent as a host runs it (under systemd, or in a lab node: the
// lab writes each node's config file and runs exactly this). Everything that can refuse does so
// before anything is changed: the config (already validated), CAP_NET_ADMIN and /dev/net/tun, the
// registry, the install settings, the mode's UDP port, and the node's claim on its IP and pod CIDRs.
// Then the node is registered (or its object brought up to date) and the agent runs until signalled.
import { join } from 'node:path';
import { isIP } from 'node:net';
import { EtcdRegistry } from '../control/etcd/etcd-registry.js';
import type { Registry, RegistryObject } from '../control/registry.js';
import type { HostAgentConfig } from '../host/agent-config.js';
import { requireNetAdmin, requireTun, requireUdpPortFree } from '../host/preflight.js';
import { detectUnderlay, type Underlay } from '../host/underlay.js';
import { cidrsOverlap, parseCidr } from '../net/cidr.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { resumeDatapathEarly, runAgent, takeNotifySocket } from './agent.js';
import { stopResumed } from './datapath-handover.js';
import { mustReadSettings } from './install-state.js';
import { recordAgentExit, recordAgentStart, type AgentRuns } from './agent-runs.js';
import { ensurePrivateDir } from '../util/private-files.js';
import { removeTunnelState } from './node-teardown.js';
import { replacedRoutesPath } from './replaced-routes.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { WG_PORT } from './wireguard-mode.js';

export function hostSocketPath(cfg: HostAgentConfig): string {
  return join(cfg.runDir, 'agent.sock');
}

export function hostRegistry(cfg: HostAgentConfig): Registry {
  const e = cfg.etcd;
  return new EtcdRegistry({ cluster: cfg.cluster, endpoints: e.endpoints, ca: e.caFile, cert: e.certFile, key: e.keyFile, username: e.username, passwordFile: e.passwordFile });
}

/** The hosts of the etcd endpoints (for the route that tells the underlay); unix sockets have none. */
function endpointHosts(endpoints: string[]): string[] {
  return endpoints.flatMap((u) => (u.startsWith('unix:') ? [] : [new URL(u).hostname.replace(/^\[|\]$/g, '')]));
}

function specStrings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' && v ? [v] : [];
}

/** The internal IPs and pod CIDRs another Node object claims. */
function claims(obj: RegistryObject): { ips: string[]; podCIDRs: string[] } {
  const s = obj.spec ?? {};
  const ips = specStrings(s['internalIPs']).length ? specStrings(s['internalIPs']) : specStrings(s['internalIP']);
  const podCIDRs = specStrings(s['podCIDRs']).length ? specStrings(s['podCIDRs']) : specStrings(s['podCIDR']);
  return { ips, podCIDRs };
}

/**
 * Refuses when another node already claims this node's IP or one of its pod CIDRs. A node that is
 * registered already keeps its claims against objects created after its own (the first claim is
 * kept, as every agent's peer admission keeps it): a forged object must not keep it from starting.
 */
export function checkClaims(node: string, ip: string, podCIDRs: string[], others: RegistryObject[], registeredAt?: string): void {
  for (const o of others) {
    if (o.metadata.name === node) continue;
    const created = o.metadata.creationTimestamp;
    if (registeredAt !== undefined && typeof created === 'string' && created > registeredAt) continue; // a later claim: peers refuse it
    const c = claims(o);
    if (c.ips.includes(ip)) {
      throw new VeilError('NODE_CONFLICT', `node '${o.metadata.name}' already claims the address ${ip} of this node '${node}'`,
        `give this host another underlay.address, or remove the stale node object of '${o.metadata.name}' if that host is gone`);
    }
    for (const mine of podCIDRs) {
      for (const theirs of c.podCIDRs) {
        let overlap = false;
        try { overlap = cidrsOverlap(parseCidr(mine), parseCidr(theirs)); } catch { continue; }
        if (overlap) {
          throw new VeilError('NODE_CONFLICT', `pod CIDR ${mine} of node '${node}' overlaps ${theirs} of node '${o.metadata.name}'`,
            'give this node a pod CIDR no other node has (podCIDRs in the agent config)');
        }
      }
    }
  }
}

/**
 * The node's addresses of the other family than its tunnel end (a dual-stack node's IPv6 beside
 * IPv4) that its object lists and the underlay interface still holds: a stale one is dropped.
 */
function otherFamilyAddresses(listed: string[], underlay: Underlay): string[] {
  const v6 = underlay.address.includes(':');
  return listed.filter((ip) => ip.includes(':') !== v6 && (underlay.addresses ?? []).includes(ip)).slice(0, 1);
}

/**
 * Registers the node, or brings its object's addresses up to date. Pod CIDRs: the config's, else
 * the object's; none anywhere is an error. Refuses (writing nothing) when another node claims them.
 */
export async function registerNode(reg: Registry, cfg: HostAgentConfig, underlay: Underlay): Promise<void> {
  const name = cfg.nodeName;
  const cur = await reg.get('Node', name);
  const podCIDRs = cfg.podCIDRs.length ? cfg.podCIDRs : cur ? claims(cur).podCIDRs : [];
  if (podCIDRs.length === 0) {
    throw new VeilError('NO_POD_CIDR', `node '${name}' has no pod CIDR: none in the agent config and ${cur ? 'none in its node object' : 'no node object in the registry'}`,
      'set podCIDRs in the agent config (e.g. podCIDRs: [10.244.5.0/24]) or $VEIL_POD_CIDRS');
  }
  const registeredAt = typeof cur?.metadata.creationTimestamp === 'string' ? cur.metadata.creationTimestamp : undefined;
  checkClaims(name, underlay.address, podCIDRs, await reg.list('Node'), registeredAt);
  const addresses = { internalIP: underlay.address, podCIDR: podCIDRs[0], podCIDRs, underlayInterface: underlay.interface, mtu: underlay.mtu };
  await reg.mutate('Node', name, (obj) => {
    if (!obj) {
      return { kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } }, spec: addresses, status: {} };
    }
    const spec = { ...(obj.spec ?? {}), ...addresses };
    if ('internalIPs' in spec) spec['internalIPs'] = [underlay.address, ...otherFamilyAddresses(claims(obj).ips, underlay)];
    if (JSON.stringify(spec) === JSON.stringify(obj.spec)) return undefined;
    return { ...obj, spec };
  });
}

export interface HostAgentOptions {
  wireguardKeylog?: string;
}

/** `veil agent run` from a validated config: checks, registration, then the agent until a signal. */
export async function runHostAgent(cfg: HostAgentConfig, opts: HostAgentOptions = {}): Promise<number> {
  const notifySocket = takeNotifySocket();
  const resumed = await resumeDatapathEarly(cfg.nodeName, notifySocket);
  let runs: AgentRuns | undefined;
  try {
    ensurePrivateDir(cfg.stateDir);
    runs = recordAgentStart(cfg.stateDir, process.pid);
  } catch { /* a state dir it cannot write: its start refuses below with the reason */ }
  const ended = (code: number, reason?: string) => {
    if (runs) { try { recordAgentExit(cfg.stateDir, { code, signal: null, at: new Date().toISOString(), ...(reason ? { reason } : {}) }); } catch { /* the next start counts it as unrecorded */ } }
    return code;
  };
  try {
    requireNetAdmin();
    requireTun();
    const underlay = detectUnderlay({ interface: cfg.underlay.interface, address: cfg.underlay.address, mtu: cfg.underlay.mtu }, endpointHosts(cfg.etcd.endpoints));
    const reg = hostRegistry(cfg);
    try {
      const settings = await mustReadSettings(reg);
      // raw ESP uses no port; a datapath handed over holds its own (this agent goes on with that socket)
      if (!resumed && (settings['encryption.type'] === 'wireguard' || settings['encryption.ipsec.encapsulation'] === 'udp')) await requireUdpPortFree(settings['encryption.type'] === 'wireguard' ? WG_PORT : ESP_IN_UDP_PORT);
      await registerNode(reg, cfg, underlay);
    } finally {
      reg.close();
    }
  } catch (e) {
    await stopResumed(resumed); // its worker would keep this process from exiting
    // Not installed (an uninstall or a rolled-back install while this agent was down): whatever
    // tunnel an agent before left here goes, and the host routes in plaintext as before veil.
    if (e instanceof VeilError && e.code === 'NOT_INSTALLED') removeTunnelState({ replacedRoutesFile: replacedRoutesPath(cfg.stateDir) });
    ended(1, errorMessage(e)); // main exits 1 with the reason
    throw e;
  }
  return ended(await runAgent({
    cluster: cfg.cluster, node: cfg.nodeName, stateDir: cfg.stateDir, socketPath: hostSocketPath(cfg),
    openRegistry: () => hostRegistry(cfg), wireguardKeylog: opts.wireguardKeylog, notifySocket, resumed,
    underlayAddresses: endpointHosts(cfg.etcd.endpoints).filter((h) => isIP(h)).map((ip) => ({ ip, what: 'an etcd endpoint of this agent' })),
    runs,
  }));
}
