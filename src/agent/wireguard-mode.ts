// WireGuard mode of the agent: the node's key pair, the veil_wg0 device and its datapath worker,
// peers from the registry (public key annotation, node IP endpoint, pod CIDR + node IP allowed),
// and the routes that steer remote pod CIDRs (and node IPs with node encryption) into the tunnel.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { RegistryObject } from '../control/registry.js';
import { loadOrGenerateKeyPair, type WireGuardKeyPair } from '../keys/wireguard-keypair.js';
import { UdpSocket } from '../datapath/udp-socket.js';
import type { TunDevice } from '../datapath/tun-device.js';
import { DatapathHost } from '../datapath/datapath-host.js';
import type { WireguardEngineStatus, WireguardPeerSpec } from '../datapath/messages.js';
import { errorMessage } from '../util/errors.js';
import type { AgentContext, EncryptionMode, PeerNode } from './encryption-mode.js';
import { HealthProber } from './health-prober.js';
import { parseDuration } from './settings.js';
import { openTunnelDevice } from './tunnel-device.js';
import { keepTunnelTrafficOnUnderlay, prefixesOnDevice, releasePrefix, steerIntoTunnel } from './routes.js';
import type { ModeMetricsSnapshot } from './metrics.js';
import type { WireguardEncryptStatus } from './api.js';

export const WG_DEVICE = 'veil_wg0';
export const WG_PORT = 51871;
/** Cilium's MTU overhead for WireGuard: 32 (message) + 40 (outer IP) + 8 (UDP). */
export const WG_MTU_OVERHEAD = 80;
export const WG_PUBKEY_ANNOTATION = 'network.veil.io/wg-pub-key';

export class WireguardMode implements EncryptionMode {
  readonly mode = 'Wireguard' as const;
  readonly device = WG_DEVICE;
  /** Unset until start() has loaded the key file (a start can fail before that). */
  private keys?: WireGuardKeyPair;
  private tun?: TunDevice;
  private udp?: UdpSocket;
  private host?: DatapathHost<'wireguard'>;
  private prober?: HealthProber;
  private peerCount = 0;
  private readonly problems = new Map<string, string>();

  constructor(private readonly ctx: AgentContext) {}

  private get nodeEncryption(): boolean {
    return this.ctx.settings['encryption.nodeEncryption'];
  }

  async start(): Promise<void> {
    const c = this.ctx;
    this.keys = loadOrGenerateKeyPair(join(c.stateDir, `${WG_DEVICE}.key`));
    c.log.info(this.keys.generated ? 'generated a new WireGuard key pair' : 'loaded the WireGuard key pair', { publicKey: this.keys.publicKeyBase64 });
    const mtu = c.underlayMtu - WG_MTU_OVERHEAD;
    this.tun = openTunnelDevice({ name: WG_DEVICE, mtu, address: c.podGateway });
    this.udp = UdpSocket.open(c.internalIP, WG_PORT, { gso: true, gro: true }); // UDP_SEGMENT / UDP_GRO: one syscall per run of datagrams
    if (this.nodeEncryption) keepTunnelTrafficOnUnderlay(WG_PORT, c.underlayInterface);
    const keylog = c.settings['encryption.wireguard.keylogFile'].replace('{node}', c.nodeName);
    this.host = new DatapathHost({
      kind: 'wireguard', tun: this.tun.describe(), udp: this.udp.describe(), cryptoThreads: c.settings['datapath.cryptoThreads'],
      privateKey: this.keys.privateKey, mtu, keylogFile: keylog || undefined,
      wallClockOffsetMs: Date.now() - performance.now(),
    }, (e) => { c.health.set('datapath', 'Failure', `datapath worker failed: ${errorMessage(e)}`); c.log.error('datapath worker failed', { error: errorMessage(e) }); });
    await this.host.whenReady();
    this.prober = new HealthProber(c.nodeName, c.podGateway, parseDuration(c.settings['agent.healthProbeInterval']));
    await this.prober.start();
  }

  async reconcile(peers: PeerNode[]): Promise<void> {
    const specs: WireguardPeerSpec[] = [];
    const byKey = new Map<string, string>();
    this.problems.clear();
    const own = this.keys!.publicKeyBase64; // reconcile runs only after a successful start
    const keepalive = Math.round(parseDuration(this.ctx.settings['encryption.wireguard.persistentKeepalive']) / 1000);
    for (const p of peers) {
      const key = p.object.metadata.annotations?.[WG_PUBKEY_ANNOTATION];
      if (!key) continue; // its agent has not published a key yet: its prefixes stay fail-closed
      if (key === own || byKey.has(key)) {
        const other = key === own ? this.ctx.nodeName : byKey.get(key)!;
        this.problems.set(`peer ${p.name}`, `detected duplicate public key. node "${p.name}" uses same key as existing node "${other}"`);
        continue;
      }
      if (!/^[A-Za-z0-9+/]{43}=$/.test(key) || /^A{43}=$/.test(key)) {
        this.problems.set(`peer ${p.name}`, `node "${p.name}" publishes an invalid public key`);
        continue;
      }
      byKey.set(key, p.name);
      specs.push({
        name: p.name, publicKey: key, endpoint: { address: p.internalIP, port: WG_PORT },
        allowedIPs: [p.podCIDR, `${p.internalIP}/32`], persistentKeepalive: keepalive,
      });
    }
    await this.host!.request({ type: 'setPeers', peers: specs });
    this.peerCount = specs.length;
    for (const [name, msg] of this.problems) this.ctx.health.set(name, 'Degraded', msg);
    // Steer every remote node's pods into the tunnel, whether or not its key is known yet:
    // traffic to a node without a peer is dropped in the datapath, never sent in plaintext.
    // Node IPs keep the node IP as source (not veil_wg0's pod gateway address): node-to-node
    // traffic stays node-to-node inside the tunnel.
    const wanted = new Map<string, string | undefined>();
    for (const p of peers) {
      wanted.set(p.podCIDR, undefined);
      if (this.nodeEncryption) wanted.set(`${p.internalIP}/32`, this.ctx.internalIP);
    }
    steerIntoTunnel([...wanted].map(([prefix, src]) => ({ prefix, device: WG_DEVICE, src })));
    for (const stale of prefixesOnDevice(WG_DEVICE)) if (!wanted.has(stale)) releasePrefix(stale, WG_DEVICE);
    this.prober?.setPeers(new Map(peers.map((p) => [p.name, p.podGateway])));
    this.checkProbes();
  }

  private checkProbes(): void {
    this.prober?.reportTo(this.ctx.health);
  }

  publish(self: RegistryObject): RegistryObject {
    this.checkProbes();
    if (!this.keys) return self; // no key loaded (start failed): publish no key rather than a stale one
    return {
      ...self,
      metadata: { ...self.metadata, annotations: { ...(self.metadata.annotations ?? {}), [WG_PUBKEY_ANNOTATION]: this.keys.publicKeyBase64 } },
      spec: { ...(self.spec ?? {}), encryption: { key: 255 } },
    };
  }

  statusDetail(): string {
    if (!this.keys) return '';
    return `[NodeEncryption: ${this.nodeEncryption ? 'Enabled' : 'Disabled'}, ${WG_DEVICE} (Pubkey: ${this.keys.publicKeyBase64}, Port: ${WG_PORT}, Peers: ${this.peerCount})]`;
  }

  private async engineStatus(): Promise<WireguardEngineStatus> {
    return this.host!.request({ type: 'status' });
  }

  async encryptStatus(): Promise<WireguardEncryptStatus> {
    const st = await this.engineStatus();
    return {
      mode: 'Wireguard',
      wireguard: {
        interfaces: [{
          name: WG_DEVICE, 'listen-port': st.listenPort, 'public-key': st.publicKey, 'peer-count': st.peers.length,
          peers: st.peers.map((p) => ({
            node: p.name ?? undefined, 'public-key': p.publicKey, endpoint: p.endpoint ?? undefined, 'allowed-ips': p.allowedIPs,
            'last-handshake-time': p.lastHandshakeUnixMs ? new Date(p.lastHandshakeUnixMs).toISOString() : '0001-01-01T00:00:00.000Z',
            'transfer-rx': p.rxBytes, 'transfer-tx': p.txBytes,
          })),
        }],
        'node-encryption': this.nodeEncryption ? 'Enabled' : 'Disabled',
      },
      counters: st.counters,
      drops: st.drops,
      probes: this.prober?.list(),
    };
  }

  async modeMetrics(): Promise<ModeMetricsSnapshot> {
    return { mode: 'Wireguard', engine: await this.engineStatus() };
  }

  async stop(): Promise<void> {
    this.prober?.stop();
    await this.host?.stop();
    this.udp?.close();
    this.tun?.close();
  }
}
