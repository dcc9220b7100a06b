// The agent's Prometheus metrics: one prom-client Registry per agent, every family filled on scrape
// from one snapshot of the agent and its datapath (the worker's status), so a scrape costs one
// request to the worker and the numbers of one scrape belong together.
import { Counter, Gauge, Registry, type GaugeConfiguration } from 'prom-client';
import {
  ESP_ENGINE_DROPS, WIREGUARD_ENGINE_DROPS, type EspEngineStatus, type TrafficCounters, type WireGuardEngineStatus,
} from '../datapath/messages.js';
import type { Health } from './health.js';

/** What an encryption mode reports for the metrics, once per scrape. */
export type ModeMetricsSnapshot =
  | { mode: 'Wireguard'; engine: WireGuardEngineStatus }
  | {
    mode: 'IPsec'; engine: EspEngineStatus;
    /** The key id (SPI) loaded from the key file (0: none) and the one this node publishes. */
    loadedKeyId: number; publishedSpi: number;
    /** Retired keys still have SAs. */
    rotationInProgress: boolean;
  };

/** The parts of the agent the metrics read. */
export interface MetricsSource {
  readonly health: Health;
  readonly startedAt: Date;
  /** Undefined while no encryption mode runs. */
  modeMetrics(): Promise<ModeMetricsSnapshot | undefined>;
  /** Requests the network API refused since start, by reason. */
  apiRefusals(): Record<string, number>;
}

interface Scrape {
  mode?: ModeMetricsSnapshot;
}

/** Drops by reason: the protocol core's own, then the engine's counters as datapath_<name>. */
function dropsOf(snap: ModeMetricsSnapshot): Record<string, number> {
  const drops: Record<string, number> = { ...snap.engine.drops };
  if (snap.mode === 'Wireguard') for (const k of WIREGUARD_ENGINE_DROPS) drops[`datapath_${k}`] = snap.engine.counters[k];
  else for (const k of ESP_ENGINE_DROPS) drops[`datapath_${k}`] = snap.engine.counters[k];
  return drops;
}

export class AgentMetrics {
  private readonly registry = new Registry();
  private scrape: Scrape = {};
  private modeFamilies?: ModeMetricsSnapshot['mode'];
  private rendering: Promise<unknown> = Promise.resolve();

  constructor(private readonly source: MetricsSource) {
    const health = source.health;
    this.gauge({
      name: 'veil_agent_health', help: 'Agent health: 1 for the current state.', labelNames: ['state'],
      collect() {
        const now = health.state();
        for (const state of ['Ok', 'Degraded', 'Failure'] as const) this.set({ state }, state === now ? 1 : 0);
      },
    });
    this.gauge({
      name: 'veil_agent_health_check_failing', help: 'Health checks that are not Ok (1 each), with their state.', labelNames: ['check', 'state'],
      collect() {
        this.reset();
        for (const c of health.problems()) this.set({ check: c.name, state: c.state }, 1);
      },
    });
    this.gauge({
      name: 'veil_agent_start_time_seconds', help: 'When the agent started (unix time).',
      collect() { this.set(source.startedAt.getTime() / 1000); },
    });
    new Counter({
      name: 'veil_agent_api_refused_total', help: 'Requests the agent API on the network refused (401: no or wrong token; 405: not GET), by reason.',
      labelNames: ['reason'], registers: [this.registry],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(source.apiRefusals())) this.inc({ reason }, n);
      },
    });
    this.gauge({
      name: 'veil_agent_resident_memory_bytes', help: 'Resident set size of the agent.',
      collect() { this.set(process.memoryUsage.rss()); },
    });
  }

  /** The text exposition; scrapes run one after another, each from its own snapshot. */
  render(): Promise<string> {
    const next = this.rendering.then(() => this.renderNow(), () => this.renderNow());
    this.rendering = next.catch(() => undefined);
    return next;
  }

  private async renderNow(): Promise<string> {
    const mode = await this.source.modeMetrics();
    if (mode && !this.modeFamilies) this.registerModeFamilies(mode.mode);
    this.scrape = { mode };
    try {
      return await this.registry.metrics();
    } finally {
      this.scrape = {};
    }
  }

  private gauge<L extends string>(config: GaugeConfiguration<L>): void {
    new Gauge({ ...config, registers: [this.registry] });
  }

  /** A family filled from the scrape's mode snapshot: `samples` gives its (labels, value) pairs (none while no mode runs). */
  private fromScrape<L extends string>(type: 'counter' | 'gauge', name: string, help: string, labelNames: readonly L[], samples: (m: ModeMetricsSnapshot) => [Partial<Record<L, string>>, number][]): void {
    const current = () => (this.scrape.mode ? samples(this.scrape.mode) : []);
    const registers = [this.registry];
    if (type === 'counter') new Counter({ name, help, labelNames, registers, collect() { this.reset(); for (const [l, v] of current()) this.inc(l, v); } });
    else new Gauge({ name, help, labelNames, registers, collect() { this.reset(); for (const [l, v] of current()) this.set(l, v); } });
  }

  /** The mode's families, registered once the mode is known (a WireGuard agent serves no IPsec families). */
  private registerModeFamilies(mode: ModeMetricsSnapshot['mode']): void {
    this.modeFamilies = mode;
    if (mode === 'Wireguard') this.registerWireGuard();
    else this.registerIpsec();
    // Both modes: inner packets and bytes each way, drops by reason.
    const traffic = (c: TrafficCounters, what: 'Packets' | 'Bytes'): [{ direction: string }, number][] =>
      [[{ direction: 'tx' }, c[`tx${what}`]], [{ direction: 'rx' }, c[`rx${what}`]]];
    this.fromScrape('counter', 'veil_datapath_packets_total', 'Inner packets through the tunnel.', ['direction'], (m) => traffic(m.engine.counters, 'Packets'));
    this.fromScrape('counter', 'veil_datapath_bytes_total', 'Inner bytes through the tunnel.', ['direction'], (m) => traffic(m.engine.counters, 'Bytes'));
    this.fromScrape('counter', 'veil_datapath_drops_total', 'Dropped packets by reason.', ['reason'], (m) => Object.entries(dropsOf(m)).map(([reason, v]) => [{ reason }, v]));
  }

  private registerWireGuard(): void {
    const wg = (f: (st: WireGuardEngineStatus) => [Partial<Record<'peer', string>>, number][]) =>
      (m: ModeMetricsSnapshot) => (m.mode === 'Wireguard' ? f(m.engine) : []);
    const perPeer = (value: (p: WireGuardEngineStatus['peers'][number]) => number) =>
      wg((st) => st.peers.map((p) => [{ peer: p.name ?? p.publicKey }, value(p)]));
    this.fromScrape('gauge', 'veil_wireguard_peers', 'Configured WireGuard peers.', [], wg((st) => [[{}, st.peers.length]]));
    this.fromScrape('counter', 'veil_wireguard_peer_rx_bytes_total', 'Bytes received from a peer (transport datagrams).', ['peer'], perPeer((p) => p.rxBytes));
    this.fromScrape('counter', 'veil_wireguard_peer_tx_bytes_total', 'Bytes sent to a peer (transport datagrams).', ['peer'], perPeer((p) => p.txBytes));
    this.fromScrape('counter', 'veil_wireguard_peer_rx_packets_total', 'Transport packets received from a peer (keepalives included).', ['peer'], perPeer((p) => p.rxPackets));
    this.fromScrape('counter', 'veil_wireguard_peer_tx_packets_total', 'Transport packets sent to a peer (keepalives included).', ['peer'], perPeer((p) => p.txPackets));
    this.fromScrape('gauge', 'veil_wireguard_keys_in_use', 'Live session keypairs (current, previous, next) over all peers.', [],
      wg((st) => [[{}, st.peers.reduce((a, p) => a + p.keypairs, 0)]]));
    this.fromScrape('gauge', 'veil_wireguard_peer_handshake_age_seconds', 'Seconds since the latest handshake with a peer (-1: never).', ['peer'],
      perPeer((p) => (p.lastHandshakeUnixMs ? (Date.now() - p.lastHandshakeUnixMs) / 1000 : -1)));
  }

  private registerIpsec(): void {
    type Ipsec = Extract<ModeMetricsSnapshot, { mode: 'IPsec' }>;
    type SaLabel = 'peer' | 'spi' | 'direction';
    const ipsec = <L extends string>(f: (m: Ipsec) => [Partial<Record<L, string>>, number][]) =>
      (m: ModeMetricsSnapshot) => (m.mode === 'IPsec' ? f(m) : []);
    const perSa = (value: (s: EspEngineStatus['sas'][number]) => number) =>
      ipsec<SaLabel>((m) => m.engine.sas.map((s) => [{ peer: s.peer, spi: String(s.spi), direction: s.direction }, value(s)]));
    this.fromScrape('gauge', 'veil_ipsec_keys_in_use', 'SAs installed (one key each), as cilium encrypt status counts them.', [], ipsec((m) => [[{}, m.engine.sas.length]]));
    this.fromScrape('gauge', 'veil_ipsec_key_id', 'The key id (SPI) in force and the one published.', ['kind'],
      ipsec<'kind'>((m) => [[{ kind: 'loaded' }, m.loadedKeyId], [{ kind: 'published' }, m.publishedSpi]]));
    this.fromScrape('gauge', 'veil_ipsec_key_rotation_in_progress', '1 while retired keys still have SAs.', [], ipsec((m) => [[{}, m.rotationInProgress ? 1 : 0]]));
    this.fromScrape('counter', 'veil_ipsec_sa_bytes_total', 'Inner bytes through an SA.', ['peer', 'spi', 'direction'], perSa((s) => s.bytes));
    this.fromScrape('counter', 'veil_ipsec_sa_packets_total', 'Packets through an SA.', ['peer', 'spi', 'direction'], perSa((s) => s.packets));
  }
}
