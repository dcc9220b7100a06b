// veil peer: cluster members that run no veil agent (kernel WireGuard or kernel IPsec hosts, a VM,
// a laptop). Argument parsing and printing; the objects and their checks are in
// src/agent/external-peers.ts, the configurations in src/operator/peer-config.ts.
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry, RegistryObject } from '../control/registry.js';
import {
  externalPeerFromObject, externalPeerObject, newExternalPeer, peerCollision, type ExternalPeer, type NodeClaim,
} from '../agent/external-peers.js';
import { agentStatusOf } from '../agent/registry-node-source.js';
import { readSettings } from '../agent/install-state.js';
import { WG_PUBKEY_ANNOTATION } from '../agent/wireguard-mode.js';
import { wgQuickConfig, type ClusterNode } from '../operator/peer-config.js';
import { formatAge } from '../lab/objects.js';
import { VeilError } from '../util/errors.js';
import { table } from '../util/text-table.js';
import { command, group, UsageError } from './flags.js';
import { printStructured } from './output.js';

function oneName(cmd: string, positionals: string[]): string {
  if (positionals.length !== 1) {
    throw new UsageError(`peer ${cmd} takes one NAME, got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'}`, `run 'veil peer ${cmd} -h' for examples`);
  }
  return positionals[0]!;
}

export async function withRegistry<T>(cluster: string, fn: (reg: Registry) => Promise<T>): Promise<T> {
  const reg = openRegistry(cluster);
  try { return await fn(reg); } finally { reg.close(); }
}

const strings = (v: unknown): string[] => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' && v ? [v] : [];

/** The cluster's nodes as a peer's configuration sees them (registered addresses, what agents published). */
export function clusterNodes(nodes: RegistryObject[]): ClusterNode[] {
  return nodes.flatMap((n) => {
    const s = n.spec ?? {};
    const ips = strings(s['internalIPs']).length ? strings(s['internalIPs']) : strings(s['internalIP']);
    if (!ips.length) return [];
    return [{
      name: n.metadata.name, ip: ips[0]!, podCIDRs: strings(s['podCIDRs']).length ? strings(s['podCIDRs']) : strings(s['podCIDR']),
      publicKey: n.metadata.annotations?.[WG_PUBKEY_ANNOTATION], bootID: agentStatusOf(n)?.bootID,
    }];
  }).sort((a, b) => a.name.localeCompare(b.name));
}

function nodeClaims(nodes: RegistryObject[]): NodeClaim[] {
  return nodes.map((n) => {
    const s = n.spec ?? {};
    return {
      name: n.metadata.name, ips: strings(s['internalIPs']).length ? strings(s['internalIPs']) : strings(s['internalIP']),
      podCIDRs: strings(s['podCIDRs']).length ? strings(s['podCIDRs']) : strings(s['podCIDR']), publicKey: n.metadata.annotations?.[WG_PUBKEY_ANNOTATION],
    };
  });
}

/** The peer NAME, or a NOT_FOUND error naming the ones there are. */
export async function getPeer(reg: Registry, name: string): Promise<ExternalPeer> {
  const obj = await reg.get('Peer', name);
  if (!obj) {
    const names = (await reg.list('Peer')).map((p) => p.metadata.name);
    throw new VeilError('NOT_FOUND', `peer "${name}" not found`, names.length ? `peers: ${names.join(', ')}` : "add one with 'veil peer add'");
  }
  const p = externalPeerFromObject(obj);
  if (typeof p === 'string') throw new VeilError('INVALID_PEER', `peer "${name}" in the registry is unusable: ${p}`, `delete it and add it again: veil peer delete ${name}`);
  return p;
}

const add = command({
  name: 'veil peer add',
  summary: 'add a member that runs no veil agent (kernel WireGuard / IPsec host)',
  usage: ['veil peer add NAME --endpoint IP:PORT --allowed-ips CIDR,... [--public-key KEY] [--keepalive S] [--boot-id UUID] [--cluster NAME]'],
  about: `Registers a host that runs plain WireGuard (or kernel IPsec) as a member of the cluster. Every
veil node adds it as a peer: WireGuard to ENDPOINT with the public key, the allowed IPs routed to
it through the tunnel. Refused when the key is not 32 bytes, or the allowed IPs overlap a node's
pod CIDR or address or another peer's allowed IPs. Then 'veil peer config NAME' prints its
wg-quick configuration, 'veil ipsec peer-config NAME' its ip xfrm commands. On a Kubernetes
cluster the peer is a Peer resource (peers.network.veil.io, kubectl get peers), created through
your kubeconfig.`,
  positionals: true,
  flags: {
    'public-key': { type: 'string', value: 'KEY', help: "its WireGuard public key (wg pubkey); needed for WireGuard" },
    endpoint: { type: 'string', value: 'IP:PORT', help: 'where the nodes reach it (port default 51871)' },
    'allowed-ips': { type: 'string', multiple: true, value: 'CIDR,...', help: 'addresses routed to it (comma-separated, repeatable)' },
    keepalive: { type: 'string', value: 'S', help: 'persistent keepalive in seconds (0: off)' },
    'boot-id': { type: 'string', value: 'UUID', help: 'IPsec: the id mixed into its per-tunnel keys (default: a random one)' },
  },
  examples: [
    'veil peer add laptop --public-key "$(wg pubkey < laptop.key)" --endpoint 172.18.0.200:51820 --allowed-ips 10.250.0.1/32',
    'veil peer add vm1 --endpoint 192.0.2.10:51871 --allowed-ips 10.250.0.0/24,192.168.50.0/24 --keepalive 25 --public-key KEY',
  ],
  async run({ values, positionals }) {
    const name = oneName('add', positionals);
    if (!values.endpoint) throw new UsageError('peer add needs --endpoint IP:PORT', "run 'veil peer add -h'");
    const keepalive = values.keepalive === undefined ? undefined : Number(values.keepalive);
    const peer = newExternalPeer(name, {
      publicKey: values['public-key'], endpoint: values.endpoint, keepalive, bootID: values['boot-id'],
      allowedIPs: (values['allowed-ips'] ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean),
    });
    const cluster = currentCluster(values.cluster);
    await withRegistry(cluster, async (reg) => {
      const others = (await reg.list('Peer')).map(externalPeerFromObject).filter((p): p is ExternalPeer => typeof p !== 'string');
      const why = peerCollision(peer, nodeClaims(await reg.list('Node')), others);
      if (why) throw new VeilError('PEER_CONFLICT', `peer "${name}" refused: ${why}`, 'give it addresses no node or other peer holds');
      await reg.create(externalPeerObject(peer));
    });
    console.log(`peer/${name} created`);
    return 0;
  },
});

const list = command({
  name: 'veil peer list',
  summary: 'the members that run no veil agent',
  usage: ['veil peer list [-o json|yaml] [--cluster NAME]'],
  output: { choices: ['json', 'yaml'] },
  examples: ['veil peer list', 'veil peer list -o json'],
  async run({ values }) {
    const objs = await withRegistry(currentCluster(values.cluster), (reg) => reg.list('Peer'));
    if (values.output) {
      printStructured({ apiVersion: 'v1', kind: 'List', items: objs }, values.output);
      return 0;
    }
    if (!objs.length) { console.error('No peers found.'); return 0; }
    const rows = [['NAME', 'ENDPOINT', 'ALLOWED-IPS', 'PUBLIC-KEY', 'KEEPALIVE', 'AGE']];
    for (const o of objs) {
      const p = externalPeerFromObject(o);
      if (typeof p === 'string') { rows.push([o.metadata.name, `(unusable: ${p})`, '', '', '', formatAge(o.metadata.creationTimestamp)]); continue; }
      rows.push([p.name, `${p.endpoint.address}:${p.endpoint.port}`, p.allowedIPs.join(','), p.publicKey ?? '<none>', String(p.persistentKeepalive), formatAge(o.metadata.creationTimestamp)]);
    }
    process.stdout.write(table(rows));
    return 0;
  },
});

const del = command({
  name: 'veil peer delete',
  summary: 'remove a peer (every node drops it)',
  usage: ['veil peer delete NAME [--cluster NAME]'],
  positionals: true,
  examples: ['veil peer delete laptop'],
  async run({ values, positionals }) {
    const name = oneName('delete', positionals);
    const gone = await withRegistry(currentCluster(values.cluster), (reg) => reg.delete('Peer', name));
    if (!gone) throw new VeilError('NOT_FOUND', `peer "${name}" not found`, "see 'veil peer list'");
    console.log(`peer/${name} deleted`);
    return 0;
  },
});

const config = command({
  name: 'veil peer config',
  summary: "the peer's wg-quick configuration (every veil node a [Peer])",
  usage: ['veil peer config NAME [--cluster NAME]'],
  about: `Prints a wg-quick configuration for the peer: its Address (the single addresses among its
allowed IPs) and ListenPort, and every node whose agent published a WireGuard key as a [Peer]
with its endpoint and pod CIDRs (and node IP with node encryption). Its private key stays with
it: add the PrivateKey line on the peer.`,
  positionals: true,
  examples: ['veil peer config laptop > veil.conf   # add PrivateKey, then: wg-quick up ./veil.conf'],
  async run({ values, positionals }) {
    const name = oneName('config', positionals);
    const cluster = currentCluster(values.cluster);
    const text = await withRegistry(cluster, async (reg) => {
      const peer = await getPeer(reg, name);
      const settings = await readSettings(reg);
      return wgQuickConfig(cluster, peer, clusterNodes(await reg.list('Node')), settings?.['encryption.nodeEncryption'] ?? false);
    });
    process.stdout.write(text);
    return 0;
  },
});

export const { run } = group({
  name: 'veil peer',
  about: 'veil peer: cluster members that run no veil agent (kernel WireGuard or kernel IPsec hosts)',
  commands: { add, list, delete: del, config },
  aliases: { remove: 'delete' },
  examples: [
    'veil peer add laptop --public-key KEY --endpoint 172.18.0.200:51820 --allowed-ips 10.250.0.1/32',
    'veil peer list',
    'veil peer config laptop',
    'veil ipsec peer-config laptop',
    'veil peer delete laptop',
  ],
});
