// The node agent: loads its node and the install settings, runs one encryption mode, follows the
// registry (reconcile, don't script), publishes its own state, and serves status and metrics.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openRegistry } from '../control/cluster.js';
import type { RegistryObject, Watch } from '../control/registry.js';
import { nodeSpec } from '../lab/objects.js';
import { clusterDir } from '../util/paths.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { Health } from './health.js';
import { mustReadSettings } from './install-state.js';
import type { AgentContext, EncryptionMode, PeerNode } from './encryption-mode.js';
import { StatusServer } from './status-server.js';
import { MetricsServer } from './metrics-server.js';
import { ApiServer } from './api-server.js';
import { loadOrCreateApiCertificate } from './api-certificate.js';
import { ApiTokenSource } from './api-token.js';
import { AgentMetrics, type ModeMetricsSnapshot } from './metrics.js';
import type { PublishedAgentStatus } from './api.js';

export const HEARTBEAT_INTERVAL_MS = 5_000;
const RESYNC_INTERVAL_MS = 10_000;

export interface AgentOptions {
  cluster: string;
  node: string;
  /** Overrides encryption.wireguard.keylogFile for this agent. */
  wireguardKeylog?: string;
}

export function nodeStateDir(cluster: string, node: string): string {
  return join(clusterDir(cluster), 'nodes', node);
}

export function agentSocketPath(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'agent.sock');
}

async function createMode(ctx: AgentContext): Promise<EncryptionMode> {
  if (ctx.settings['encryption.type'] === 'wireguard') {
    const { WireguardMode } = await import('./wireguard-mode.js');
    return new WireguardMode(ctx);
  }
  const { IpsecMode } = await import('./ipsec-mode.js');
  return new IpsecMode(ctx);
}

function readBootID(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().toLowerCase();
  } catch (e) {
    throw new VeilError('NO_BOOT_ID', `cannot read the node's boot id from ${file}: ${errorMessage(e)}`, 'recreate the lab (veil lab down && veil lab up)');
  }
}

export class Agent {
  readonly log: Logger;
  readonly health = new Health();
  private ctx!: AgentContext;
  private mode!: EncryptionMode;
  private server?: StatusServer;
  private metricsServer?: MetricsServer;
  private apiServer?: ApiServer;
  private apiFingerprint?: string;
  private watch?: Watch;
  private timers: NodeJS.Timeout[] = [];
  private reconcileQueued = false;
  private reconciling: Promise<void> = Promise.resolve();
  private stopped = false;
  readonly startedAt = new Date();

  constructor(private readonly opts: AgentOptions) {
    this.log = createLogger({ node: opts.node });
  }

  async start(): Promise<void> {
    const registry = openRegistry(this.opts.cluster);
    const self = await registry.get('Node', this.opts.node);
    if (!self) throw new VeilError('UNKNOWN_NODE', `node '${this.opts.node}' is not in cluster '${this.opts.cluster}'`, "list nodes with 'veil lab get nodes'");
    const spec = nodeSpec(self);
    const settings = await mustReadSettings(registry);
    if (this.opts.wireguardKeylog) settings['encryption.wireguard.keylogFile'] = this.opts.wireguardKeylog;
    const stateDir = nodeStateDir(this.opts.cluster, this.opts.node);
    mkdirSync(stateDir, { recursive: true, mode: 0o770 });
    this.ctx = {
      cluster: this.opts.cluster, nodeName: this.opts.node, internalIP: spec.internalIP, podCIDR: spec.podCIDR, podGateway: spec.podGateway,
      underlayMtu: spec.mtu, underlayInterface: spec.underlayInterface, bootID: readBootID(spec.bootIDFile), stateDir, settings, registry, log: this.log, health: this.health,
      requestPublish: () => this.publish(true), requestReconcile: () => this.queueReconcile(),
    };
    this.log.info('agent starting', { pid: process.pid, encryption: settings['encryption.type'] });

    this.server = new StatusServer(agentSocketPath(this.opts.cluster, this.opts.node), this);
    await this.server.listen();
    // Metrics on the node IP are optional: a taken port degrades health instead of failing the node.
    this.metricsServer = new MetricsServer(spec.internalIP, settings['agent.metricsPort'], () => this.metrics());
    await this.metricsServer.listen().then(
      () => this.health.ok('metrics', this.metricsServer!.address),
      (e) => { this.health.set('metrics', 'Degraded', `cannot serve metrics on ${this.metricsServer!.address}: ${errorMessage(e)}`); this.metricsServer = undefined; },
    );
    await this.serveNetworkApi();

    this.mode = await createMode(this.ctx);
    try {
      await this.mode.start();
      this.health.ok('datapath', `${this.mode.device} up`);
    } catch (e) {
      this.health.set('datapath', 'Failure', errorMessage(e));
      // report NotReady, but never let a failed publish hide the reason the start failed
      await this.publish(false).catch((pe) => this.log.warn('publish failed', { error: errorMessage(pe) }));
      throw e;
    }
    // Watch from before the first reconcile: a peer that publishes its key meanwhile must not be
    // missed until the next resync (it was: peers converged only with the 5 s heartbeats).
    const rev = await registry.revision();
    await this.reconcileNow();
    await this.publish(true);
    this.log.info('agent ready', { device: this.mode.device });

    this.watch = registry.watch('Node', rev, (ev) => {
      this.cache(ev.object, ev.type === 'DELETED');
      this.queueReconcile();
    });
    this.timers.push(setInterval(() => { void this.publish(true).catch((e) => this.log.warn('heartbeat failed', { error: errorMessage(e) })); }, HEARTBEAT_INTERVAL_MS));
    this.timers.push(setInterval(() => this.queueReconcile(), RESYNC_INTERVAL_MS));
  }

  /** The status API over HTTPS on the node IP, for a CLI elsewhere; like metrics, a failure degrades health. */
  private async serveNetworkApi(): Promise<void> {
    const { internalIP, settings, stateDir, registry } = this.ctx;
    try {
      const certificate = await loadOrCreateApiCertificate(stateDir, this.opts.node, internalIP);
      const tokens = new ApiTokenSource(registry);
      const server = new ApiServer({
        host: internalIP, port: settings['agent.apiPort'], certificate, log: this.log,
        token: () => tokens.token(), answer: (url) => this.server!.answer(url),
      });
      await server.listen();
      this.apiServer = server;
      this.apiFingerprint = certificate.fingerprint256;
      this.health.ok('api', server.address);
    } catch (e) {
      this.health.set('api', 'Degraded', `cannot serve the agent API on ${internalIP}:${settings['agent.apiPort']}: ${errorMessage(e)}`);
    }
  }

  /** Requests the network API refused, by reason (for the metrics). */
  apiRefusals(): Record<string, number> {
    return { ...(this.apiServer?.refused ?? {}) };
  }

  get context(): AgentContext {
    return this.ctx;
  }

  get encryption(): EncryptionMode {
    return this.mode;
  }

  private queueReconcile(): void {
    if (this.reconcileQueued || this.stopped) return;
    this.reconcileQueued = true;
    setTimeout(() => {
      this.reconcileQueued = false;
      this.reconciling = this.reconciling.then(() => this.reconcileNow()).catch((e) => {
        this.log.error('reconcile failed', { error: errorMessage(e) });
      });
    }, 50);
  }

  /**
   * The node objects as the watch delivered them (an informer cache): a watch event carries the
   * object as committed, while a read right after the event may still see the previous file.
   */
  private readonly nodes = new Map<string, RegistryObject>();
  private readonly deleted = new Map<string, number>();

  private cache(obj: RegistryObject, deleted = false): void {
    const name = obj.metadata.name;
    const rv = obj.metadata.resourceVersion ?? 0;
    const have = this.nodes.get(name)?.metadata.resourceVersion ?? this.deleted.get(name) ?? -1;
    if (rv < have) return; // never go back to an older version
    if (deleted) { this.nodes.delete(name); this.deleted.set(name, rv); }
    else { this.nodes.set(name, obj); this.deleted.delete(name); }
  }

  private async reconcileNow(): Promise<void> {
    const listed = await this.ctx.registry.list('Node');
    const names = new Set(listed.map((n) => n.metadata.name));
    for (const n of listed) this.cache(n);
    for (const name of [...this.nodes.keys()]) if (!names.has(name) && !this.deleted.has(name)) this.nodes.delete(name);
    const peers: PeerNode[] = [];
    for (const n of this.nodes.values()) {
      if (n.metadata.name === this.opts.node) continue;
      const s = nodeSpec(n);
      if (!s?.internalIP || !s.podCIDR || !s.podGateway) continue;
      peers.push({ name: n.metadata.name, internalIP: s.internalIP, podCIDR: s.podCIDR, podGateway: s.podGateway, object: n });
    }
    try {
      await this.mode.reconcile(peers);
      this.health.clear('reconcile');
    } catch (e) {
      this.health.set('reconcile', 'Degraded', errorMessage(e));
      throw e;
    }
  }

  /** Writes status.agent (the heartbeat) and the mode's published fields to the node object. */
  async publish(ready: boolean): Promise<void> {
    const status: PublishedAgentStatus = {
      ready: ready && this.health.state() !== 'Failure',
      heartbeat: new Date().toISOString(),
      pid: process.pid,
      bootID: this.ctx.bootID,
      startedAt: this.startedAt.toISOString(),
      health: { state: this.health.state(), problems: this.health.problems().map((c) => `${c.name}: ${c.message}`) },
      encryption: this.mode ? { mode: this.mode.mode, device: this.mode.device, detail: this.mode.statusDetail() } : undefined,
      apiAddress: this.apiServer?.address,
      apiFingerprint: this.apiFingerprint,
    };
    await this.ctx.registry.mutate('Node', this.opts.node, (cur: RegistryObject | undefined) => {
      if (!cur) return undefined;
      const next: RegistryObject = { ...cur, status: { ...(cur.status ?? {}), agent: status } };
      return this.mode ? this.mode.publish(next) : next;
    });
  }

  private readonly prometheus = new AgentMetrics(this);

  /** The Prometheus text exposition of this agent (GET /metrics). */
  metrics(): Promise<string> {
    return this.prometheus.render();
  }

  async modeMetrics(): Promise<ModeMetricsSnapshot | undefined> {
    return this.mode?.modeMetrics();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.watch?.stop();
    await this.reconciling.catch(() => undefined);
    try { await this.mode?.stop(); } catch (e) { this.log.warn('datapath stop failed', { error: errorMessage(e) }); }
    try { await this.publish(false); } catch { /* the registry may be gone (lab down) */ }
    await this.server?.close();
    await this.metricsServer?.close();
    await this.apiServer?.close();
    this.ctx?.registry.close();
    this.log.info('agent stopped');
  }
}

/** `veil agent run`: runs until SIGTERM/SIGINT. */
export async function runAgent(opts: AgentOptions): Promise<number> {
  process.title = `veil-agent-${opts.node}`;
  const agent = new Agent(opts);
  let done: (code: number) => void = () => undefined;
  const finished = new Promise<number>((r) => { done = r; });
  const shutdown = (sig: string) => {
    agent.log.info('signal received', { signal: sig });
    void agent.stop().then(() => done(0), () => done(1));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    await agent.start();
  } catch (e) {
    agent.log.error('agent failed to start', { error: errorMessage(e) });
    await agent.stop().catch(() => undefined);
    rmSync(agentSocketPath(opts.cluster, opts.node), { force: true });
    return 1;
  }
  return finished;
}
