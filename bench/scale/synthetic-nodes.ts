// Synthetic nodes for the scale bench: Node objects and liveness leases written to the cluster's
// real etcd exactly as `lab up` registers a node and its agent publishes itself (addresses, pod
// CIDR, boot id, the IPsec key id, a ready status; the lease object under the node's name; in
// WireGuard mode a real X25519 public key annotation and key id 255 instead), so the real agents
// under test cannot tell them from real nodes. Their addresses lie inside the lab's
// underlay subnet (the lab bridge: nothing sent to them leaves the lab's namespaces). All leases
// hang off one etcd lease kept alive by this process, so heartbeats cost etcd one keepalive.
import { randomUUID } from 'node:crypto';
import { generatePrivateKey } from '../../src/crypto/x25519.js';
import type { Etcd3, Lease } from 'etcd3';
import { loadClusterConfig } from '../../src/control/cluster-config.js';
import { connectEtcd, type EtcdConnectionOptions } from '../../src/control/etcd/etcd-connection.js';
import { encodeObject } from '../../src/control/etcd/object-codec.js';
import { objectKey } from '../../src/control/etcd/keys.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { WG_DEVICE, WG_ENCRYPTION_KEY, WG_PUBKEY_ANNOTATION } from '../../src/agent/wireguard-mode.js';

/** etcd's default --max-txn-ops is 128. */
const PUTS_PER_TXN = 100;
/** The lab's underlay is 172.18.0.0/16 with its real nodes at the bottom: synthetic ones start at 172.18.100.0. */
const FIRST_UNDERLAY_OCTET = 100;

export interface SyntheticAddresses { internalIP: string; podCIDR: string; podGateway: string }

/** Node i's addresses: 172.18.(100 + i/250).(2 + i%250) and 10.(100 + i/256).(i%256).0/24. */
export function syntheticAddresses(i: number): SyntheticAddresses {
  const hi = 100 + (i >> 8);
  const lo = i & 255;
  return {
    internalIP: `172.18.${FIRST_UNDERLAY_OCTET + Math.floor(i / 250)}.${2 + (i % 250)}`,
    podCIDR: `10.${hi}.${lo}.0/24`, podGateway: `10.${hi}.${lo}.1`,
  };
}

/**
 * What a synthetic node answers its peers with (synthetic-responder.ts): in WireGuard its static
 * private key, in IPsec its boot id (the pair's keys are derived from both ends' boot ids).
 */
export type SyntheticKey = { name: string; address: string } & ({ privateKey: Uint8Array } | { bootId: string });

/** Told each synthetic node's private key or boot id before it is published (awaited). */
export type KeyListener = (keys: SyntheticKey[]) => Promise<unknown>;

const base64 = (key: Uint8Array) => Buffer.from(key).toString('base64');

/** Which encryption the synthetic agents run: what they publish (the real agents' mode). */
export type SyntheticEncryption = 'ipsec' | 'wireguard';

export const syntheticName = (i: number) => `sim-${String(i).padStart(5, '0')}`;

export class SyntheticNodes {
  private readonly objects = new Map<string, RegistryObject>();
  /** When each node's current encryption key id was accepted by etcd (ms, this process's clock). */
  readonly spiPublishedAt = new Map<string, Map<number, number>>();

  /** Where each node's private key or boot id goes (the answering peers), if anywhere. */
  onKeys?: KeyListener;

  private constructor(readonly cluster: string, private readonly client: Etcd3, private readonly lease: Lease, private readonly leaseId: string, private spi: number, readonly encryption: SyntheticEncryption) {}

  /** Connects to the cluster's etcd as its config says; spi: the key id synthetic agents publish at first. */
  static async open(cluster: string, spi: number, encryption: SyntheticEncryption = 'ipsec'): Promise<SyntheticNodes> {
    const entry = loadClusterConfig().clusters.find((c) => c.name === cluster);
    if (!entry) throw new Error(`no cluster '${cluster}' in the cluster config`);
    if (entry.registry.type !== 'etcd') throw new Error(`cluster '${cluster}' has no etcd registry (${entry.registry.type})`);
    const { type: _type, ...conn } = entry.registry;
    return SyntheticNodes.connect(cluster, conn, spi, encryption);
  }

  /** The same on an etcd given by its connection (the in-process memory bench starts its own). */
  static async connect(cluster: string, conn: EtcdConnectionOptions, spi: number, encryption: SyntheticEncryption = 'ipsec'): Promise<SyntheticNodes> {
    const client = connectEtcd(conn);
    const lease = client.lease(30, { autoKeepAlive: true });
    const id = await lease.grant();
    return new SyntheticNodes(cluster, client, lease, id, spi, encryption);
  }

  get size(): number {
    return this.objects.size;
  }

  names(): string[] {
    return [...this.objects.keys()];
  }

  /** Registers nodes [from, to) with live leases; resolves when etcd accepted the last one (Date.now()). */
  async add(from: number, to: number): Promise<number> {
    const now = new Date().toISOString();
    const nodes: RegistryObject[] = [];
    const leases: RegistryObject[] = [];
    const keys: SyntheticKey[] = [];
    for (let i = from; i < to; i++) {
      const name = syntheticName(i);
      const a = syntheticAddresses(i);
      const bootID = randomUUID();
      const wg = this.encryption === 'wireguard';
      const key = wg ? generatePrivateKey() : undefined;
      keys.push(key ? { name, address: a.internalIP, privateKey: key.raw } : { name, address: a.internalIP, bootId: bootID });
      const obj: RegistryObject = {
        kind: 'Node', metadata: { name, creationTimestamp: now, labels: { 'veil.io/synthetic': 'true' }, annotations: key ? { [WG_PUBKEY_ANNOTATION]: base64(key.publicKey) } : {} },
        spec: { ...a, underlayInterface: 'eth0', underlayPrefix: 16, mtu: 1500, index: 1000 + i, encryption: { key: wg ? WG_ENCRYPTION_KEY : this.spi } },
        status: { agent: { ready: true, pid: 100_000 + i, bootID, startedAt: now, health: { state: 'Ok', problems: [] }, encryption: wg ? { mode: 'Wireguard', device: WG_DEVICE, detail: '' } : { mode: 'IPsec', device: 'veil_ipsec0', detail: '' } } },
      };
      this.objects.set(name, obj);
      this.recordSpi(name, this.spi);
      nodes.push(obj);
      leases.push({ kind: 'Lease', metadata: { name, creationTimestamp: now }, spec: { node: name, pid: 100_000 + i, bootID, startedAt: now, renewTime: now, ttlSeconds: 30 } });
    }
    if (keys.length) await this.onKeys?.(keys);
    await this.putAll(leases, true); // alive first: a node is a peer once both are there
    await this.putAll(nodes, false);
    return Date.now();
  }

  /** The node rebooted: a new boot id (IPsec keys are derived from it). Resolves when etcd accepted it. */
  async setBootID(name: string, bootID = randomUUID()): Promise<string> {
    const obj = this.mustGet(name);
    if (this.encryption === 'ipsec') await this.onKeys?.([{ name, address: String(obj.spec!['internalIP']), bootId: bootID }]);
    (obj.status!['agent'] as Record<string, unknown>)['bootID'] = bootID;
    await this.putAll([obj], false);
    return bootID;
  }

  /**
   * The node's WireGuard agent publishes a new public key (a new key pair, as after its state was
   * lost): its private key goes to onKeys first. Resolves with the public key (base64) when etcd accepted it.
   */
  async setPublicKey(name: string, key = generatePrivateKey()): Promise<string> {
    const obj = this.mustGet(name);
    const pub = base64(key.publicKey);
    await this.onKeys?.([{ name, address: String(obj.spec!['internalIP']), privateKey: key.raw }]);
    obj.metadata.annotations = { ...obj.metadata.annotations, [WG_PUBKEY_ANNOTATION]: pub };
    await this.putAll([obj], false);
    return pub;
  }

  /** The node's agent publishes a new IPsec key id (it installed the inbound SAs first, as real agents do). */
  async setSpi(name: string, spi: number): Promise<void> {
    const obj = this.mustGet(name);
    obj.spec!['encryption'] = { key: spi };
    await this.putAll([obj], false);
    this.recordSpi(name, spi);
  }

  /** Every node publishes `spi` from now on (new nodes too). */
  set defaultSpi(spi: number) {
    this.spi = spi;
  }

  private recordSpi(name: string, spi: number): void {
    let m = this.spiPublishedAt.get(name);
    if (!m) this.spiPublishedAt.set(name, (m = new Map()));
    if (!m.has(spi)) m.set(spi, Date.now());
  }

  private mustGet(name: string): RegistryObject {
    const obj = this.objects.get(name);
    if (!obj) throw new Error(`no synthetic node ${name}`);
    return obj;
  }

  private async putAll(objs: RegistryObject[], withLease: boolean): Promise<void> {
    for (let i = 0; i < objs.length; i += PUTS_PER_TXN) {
      const success = objs.slice(i, i + PUTS_PER_TXN).map((o) => ({
        request_put: { key: Buffer.from(objectKey(this.cluster, o.kind, o.metadata.name)), value: Buffer.from(encodeObject(o)), ...(withLease ? { lease: this.leaseId } : {}) },
      }));
      await this.client.kv.txn({ compare: [], success, failure: [] });
    }
  }

  /** Deletes every synthetic node and lease. */
  async removeAll(): Promise<void> {
    const names = [...this.objects.keys()];
    for (let i = 0; i < names.length; i += PUTS_PER_TXN / 2) {
      const success = names.slice(i, i + PUTS_PER_TXN / 2).flatMap((n) => [ // two deletes a node
        { request_delete_range: { key: Buffer.from(objectKey(this.cluster, 'Node', n)) } },
        { request_delete_range: { key: Buffer.from(objectKey(this.cluster, 'Lease', n)) } },
      ]);
      await this.client.kv.txn({ compare: [], success, failure: [] });
    }
    this.objects.clear();
  }

  async close(): Promise<void> {
    await this.lease.revoke().catch(() => undefined);
    this.client.close();
  }
}
