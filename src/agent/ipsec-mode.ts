// IPsec mode of the agent: the key file from the secret (Cilium's grammar and rotation rules),
// per-tunnel SAs derived for every peer and key in force, the veil_ipsec0 device and its ESP
// datapath worker, and rotation in the safe order: inbound SAs for the new key first, then
// publish the SPI, and a sender moves only when both ends published it (pairSpi).
import { join } from 'node:path';
import type { RegistryObject, Watch } from '../control/registry.js';
import { IpsecKeyLoader } from '../keys/ipsec-key-loader.js';
import { IPSEC_SECRET_DATA_KEY } from '../keys/ipsec-key-secret.js';
import type { IpsecKey } from '../keys/ipsec-keyfile.js';
import { deriveTunnelTransforms } from '../keys/ipsec-derive.js';
import { pairSpi } from '../keys/ipsec-spi.js';
import { ipsecTunnelMtu } from '../keys/ipsec-mtu.js';
import { readSequenceMarks } from '../esp/sequence-mark-file.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { UdpSocket } from '../datapath/udp-socket.js';
import type { TunDevice } from '../datapath/tun-device.js';
import { DatapathHost } from '../datapath/datapath-host.js';
import type { EspEngineStatus, EspPeerSpec } from '../datapath/messages.js';
import { VeilError, errorMessage } from '../util/errors.js';
import type { AgentContext, EncryptionMode, PeerNode } from './encryption-mode.js';
import { HealthProber } from './health-prober.js';
import { parseDuration } from './settings.js';
import { openTunnelDevice } from './tunnel-device.js';
import { prefixesOnDevice, releasePrefix, steerIntoTunnel } from './routes.js';
import type { ModeMetricsSnapshot } from './metrics.js';
import type { IpsecEncryptStatus, PublishedAgentStatus } from './api.js';

export const IPSEC_DEVICE = 'veil_ipsec0';

export class IpsecMode implements EncryptionMode {
  readonly mode = 'IPsec' as const;
  readonly device = IPSEC_DEVICE;
  private readonly loader = new IpsecKeyLoader();
  private tun?: TunDevice;
  private udp?: UdpSocket;
  private host?: DatapathHost<'esp'>;
  private prober?: HealthProber;
  private secretWatch?: Watch;
  private expiryTimer?: NodeJS.Timeout;
  private publishedSpi = 0;
  private started = false;
  private mtu = 0;

  constructor(private readonly ctx: AgentContext) {}

  private get secretName(): string {
    return this.ctx.settings['encryption.ipsec.secretName'];
  }

  private get keyFileName(): string {
    return `secret:${this.secretName}/${IPSEC_SECRET_DATA_KEY}`;
  }

  /** The key file text; `committed` is the secret as a watch event delivered it (fresher than a read). */
  private async readKeyFile(committed?: RegistryObject): Promise<string> {
    const s = committed ?? await this.ctx.registry.get('Secret', this.secretName);
    const raw = s?.data?.[IPSEC_SECRET_DATA_KEY];
    if (raw === undefined) {
      throw new VeilError('NO_IPSEC_KEYS', `open ${this.keyFileName}: no such file or directory`,
        `create the secret: veil secret create ${this.secretName} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128"`);
    }
    return Buffer.from(raw, 'base64').toString('utf8');
  }

  async start(): Promise<void> {
    const c = this.ctx;
    const loaded = this.loader.load(await this.readKeyFile(), Date.now());
    if (!loaded.ok) throw new VeilError(loaded.error.code, `failed to load IPsec keyfile ${this.keyFileName}: ${loaded.error.message}`, loaded.error.hint);
    const key = loaded.value.current;
    c.health.ok('ipsec-keys', `Watching keyfiles (key id ${key.spi})`);
    this.mtu = ipsecTunnelMtu(c.underlayMtu, key).mtu;
    this.tun = openTunnelDevice({ name: IPSEC_DEVICE, mtu: this.mtu, address: c.podGateway });
    this.udp = UdpSocket.open(c.internalIP, ESP_IN_UDP_PORT, { gso: true, gro: true }); // UDP_SEGMENT / UDP_GRO: one syscall per run of datagrams
    const marksFile = join(c.stateDir, 'esp-sequence-marks.json');
    const marks = await readSequenceMarks(marksFile);
    this.host = new DatapathHost({
      kind: 'esp', tun: this.tun.describe(), udp: this.udp.describe(), cryptoThreads: c.settings['datapath.cryptoThreads'],
      localIp: c.internalIP, mtu: this.mtu, marksFile, marks: Object.fromEntries(marks),
    }, (e) => { c.health.set('datapath', 'Failure', `datapath worker failed: ${errorMessage(e)}`); c.log.error('datapath worker failed', { error: errorMessage(e) }); });
    await this.host.whenReady();
    this.prober = new HealthProber(c.nodeName, c.podGateway, parseDuration(c.settings['agent.healthProbeInterval']));
    await this.prober.start();
    if (c.settings['encryption.ipsec.keyWatcher']) {
      this.secretWatch = c.registry.watch('Secret', await c.registry.revision(), (ev) => {
        if (ev.object.metadata.name === this.secretName) void this.reloadKeys(ev.type === 'DELETED' ? { ...ev.object, data: {} } : ev.object);
      });
    }
    // Retired keys expire on their own clock, not only when the cluster changes.
    this.expiryTimer = setInterval(() => { if (this.loader.retired().length) c.requestReconcile(); }, 1000);
    this.started = true;
  }

  /** The key file changed: load it, or keep the key in force and say why not. */
  private async reloadKeys(committed: RegistryObject): Promise<void> {
    const c = this.ctx;
    let text: string;
    try {
      text = await this.readKeyFile(committed);
    } catch (e) {
      c.health.set('ipsec-keys', 'Degraded', `Failed to load keyfile "${this.keyFileName}": ${errorMessage(e)}`);
      c.log.error('Failed to load IPsec keyfile', { error: errorMessage(e) });
      return;
    }
    const r = this.loader.load(text, Date.now());
    if (!r.ok) {
      c.health.set('ipsec-keys', 'Degraded', `Failed to load keyfile "${this.keyFileName}": ${r.error.message}; key id ${this.loader.current?.spi} stays in force`);
      c.log.error('Failed to load IPsec keyfile', { error: r.error.describe(), keyInForce: this.loader.current?.spi });
      return;
    }
    c.health.ok('ipsec-keys', `Watching keyfiles (key id ${r.value.current.spi})`);
    if (!r.value.changed) return;
    c.log.info('new IPsec key loaded', { spi: r.value.current.spi, rotatedFrom: r.value.rotatedFrom.map((k) => k.spi) });
    c.requestReconcile();
  }

  private keysInForce(): IpsecKey[] {
    const cur = this.loader.current!;
    return [cur, ...this.loader.retired().map((r) => r.key).filter((k) => k.spi !== cur.spi)];
  }

  async reconcile(peers: PeerNode[]): Promise<void> {
    const c = this.ctx;
    const expired = this.loader.expire(Date.now(), parseDuration(c.settings['encryption.ipsec.keyRotationDuration']));
    if (expired.length) c.log.info('removing SAs of retired IPsec keys', { spis: expired.map((k) => k.spi) });
    const keys = this.keysInForce();
    const current = this.loader.current!;
    const localSpi = this.publishedSpi || current.spi;
    const local = { ip: c.internalIP, bootId: c.bootID };
    const specs: EspPeerSpec[] = [];
    for (const p of peers) {
      const agent = p.object.status?.['agent'] as Partial<PublishedAgentStatus> | undefined;
      const bootId = agent?.bootID;
      if (!bootId) continue; // no boot id published yet: no SA, its pods stay fail-closed
      const peerSpi = Number((p.object.spec?.['encryption'] as { key?: number } | undefined)?.key ?? 0);
      const spec: EspPeerSpec = { name: p.name, ip: p.internalIP, allowedIPs: [p.podCIDR], outbound: [], inbound: [], activeSpi: 0 };
      try {
        for (const k of keys) {
          const t = deriveTunnelTransforms(k, local, { ip: p.internalIP, bootId });
          spec.outbound.push({ spi: k.spi, transform: t.out });
          spec.inbound.push({ spi: k.spi, transform: t.in });
        }
      } catch (e) {
        c.health.set(`peer ${p.name}`, 'Degraded', `cannot derive IPsec keys for ${p.name}: ${errorMessage(e)}`);
        continue;
      }
      c.health.clear(`peer ${p.name}`);
      const spi = pairSpi(localSpi, peerSpi);
      spec.activeSpi = keys.some((k) => k.spi === spi) ? spi : 0;
      specs.push(spec);
    }
    // Inbound SAs for every key in force are installed before the new SPI is published.
    await this.host!.request({ type: 'setPeers', peers: specs });
    const wanted = new Set(peers.map((p) => p.podCIDR));
    steerIntoTunnel([...wanted].map((prefix) => ({ prefix, device: IPSEC_DEVICE })));
    for (const stale of prefixesOnDevice(IPSEC_DEVICE)) if (!wanted.has(stale)) releasePrefix(stale, IPSEC_DEVICE);
    this.prober?.setPeers(new Map(peers.map((p) => [p.name, p.podGateway])));
    this.checkProbes();
    if (this.publishedSpi !== current.spi) {
      this.publishedSpi = current.spi;
      if (this.started) {
        await c.requestPublish();
        c.requestReconcile(); // our own published SPI moved: pair SPIs may move too
      }
    }
  }

  private checkProbes(): void {
    this.prober?.reportTo(this.ctx.health);
  }

  publish(self: RegistryObject): RegistryObject {
    this.checkProbes();
    return { ...self, spec: { ...(self.spec ?? {}), encryption: { key: this.publishedSpi } } };
  }

  statusDetail(): string {
    return '';
  }

  async engineStatus(showKeys = false): Promise<EspEngineStatus> {
    return this.host!.request({ type: 'status', showKeys });
  }

  async encryptStatus(): Promise<IpsecEncryptStatus> {
    const st = await this.engineStatus();
    const maxSeq = st.sas.filter((s) => s.direction === 'out').reduce((m, s) => Math.max(m, s.sequence), 0);
    const errors = Object.values(st.xfrmErrors).reduce((a, b) => a + b, 0);
    return {
      mode: 'IPsec',
      ipsec: {
        'decrypt-interfaces': [IPSEC_DEVICE],
        'keys-in-use': st.sas.length,
        'max-seq-number': st.sas.length ? `0x${maxSeq.toString(16)}/0xffffffffffffffff` : 'N/A',
        'error-count': errors,
        'xfrm-errors': st.xfrmErrors,
      },
      keyId: this.loader.current?.spi,
      publishedSpi: this.publishedSpi,
      retiredKeys: this.loader.retired().map((r) => ({ spi: r.key.spi, since: new Date(r.sinceMs).toISOString() })),
      sas: st.sas,
      drops: st.drops,
      counters: st.counters,
      probes: this.prober?.list(),
    };
  }

  async modeMetrics(): Promise<ModeMetricsSnapshot> {
    return {
      mode: 'IPsec', engine: await this.engineStatus(),
      loadedKeyId: this.loader.current?.spi ?? 0, publishedSpi: this.publishedSpi, rotationInProgress: this.loader.retired().length > 0,
    };
  }

  async stop(): Promise<void> {
    this.started = false;
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.secretWatch?.stop();
    this.prober?.stop();
    await this.host?.stop();
    this.udp?.close();
    this.tun?.close();
  }
}
