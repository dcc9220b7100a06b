// The node agent: learns its node through a node source, runs one encryption mode over one
// tunnel, follows its peers (reconcile, don't script), publishes its own fields when they change,
// keeps its liveness lease, and serves status and metrics.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ensurePrivateDir } from '../util/private-files.js';
import type { LeaseHandle, Registry, Watch } from '../control/registry.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { veilVersion } from '../util/version.js';
import { Health } from './health.js';
import { registryInputs, type AgentInputs } from './agent-inputs.js';
import type { EncryptionMode, ModeContext } from './encryption-mode.js';
import type { NodeSource, OwnFields, OwnNode, PeerNode } from './node-source.js';
import type { AgentMemory, EncryptStatus, Healthz, PublishedAgentStatus } from './api.js';
import { heapFigures } from '../util/heap-figures.js';
import { compactWhenQuiet } from '../util/heap-compaction.js';
import { mapLargeMallocBlocks, returnFreedMalloc } from '../native/malloc-trim.js';
import { mallocStats } from '../native/malloc-stats.js';
import { RegistryNodeSource } from './registry-node-source.js';
import { RegistryPeerObjects, WithExternalPeers } from './external-peers.js';
import { ciliumModeName, parseDuration, type Settings } from './settings.js';
import { Tunnel, type DesiredState, type TunnelOptions } from './tunnel.js';
import type { EngineKind } from '../datapath/messages.js';
import { StatusServer } from './status-server.js';
import { MetricsServer } from './metrics-server.js';
import { ApiServer } from './api-server.js';
import { loadOrCreateApiCertificate } from './api-certificate.js';
import { ApiTokenSource } from './api-token.js';
import { AgentMetrics, type ModeMetricsSnapshot } from './metrics.js';
import { UnderlayScreen } from './peer-admission.js';
import { UnderlayFactsReader } from './underlay-routes.js';
import { TUNNEL_DEVICES } from './installer.js';
import type { AgentRuns } from './agent-runs.js';
import { removeTunnelState } from './node-teardown.js';
import { replacedRoutesPath } from './replaced-routes.js';
import { resumeHandedOverDatapath, stopResumed, storeDatapath, type ResumedDatapath } from './datapath-handover.js';

/** The liveness lease: renewed every TTL/3; a dead agent's node is NotReady within the TTL. */
export const LIVENESS_TTL_SECONDS = 15;
/** How often the agent re-checks its health and publishes it if it changed (no write otherwise). */
const PUBLISH_CHECK_INTERVAL_MS = 2_000;
/**
 * A full pass now and then, whatever the watch said (the safety net: every change the modes use
 * comes as an event, and a failed pass is retried on its own): at 5,000 peers each costs the mode's
 * desired state over every peer, so it is not frequent.
 */
const RESYNC_INTERVAL_MS = 30_000;
/**
 * Every this many resyncs the pass is whole (the tunnel checks the worker's table by digest, sending
 * it whole only when it differs, and mends the routes the table lacks): every 60 s, on the resync's clock, so the safety net's cost recurs at a fixed
 * period (it was "60 s after the last whole pass ended", which the 30 s resyncs made every 90 s).
 */
const WHOLE_PASS_EVERY_RESYNCS = 2;
/**
 * How often the free pages of every malloc arena go back to the kernel (native/malloc-trim.c): what
 * a pass, a message to the worker, a relist or a heap compaction freed there stayed resident (glibc
 * returns only an arena's top). A trim takes ~2-3 ms at 5,000 peers.
 */
const MALLOC_TRIM_INTERVAL_MS = 20_000;
/** A failed pass is tried again after this, doubling up to RETRY_MAX_MS (the resync's interval before it went to 30 s). */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 10_000;
/**
 * A new key id (a cluster-wide IPsec rotation) is published after a random delay of up to 1 ms per
 * peer (at most this): every agent writes its node object, spread out instead of all at once. The
 * rotation rule holds: the inbound SAs for the new key are in place before the delay starts.
 */
const KEY_PUBLISH_JITTER_MAX_MS = 5_000;
/** Health details alone (a probe, a peer problem) are written at most this often; a change of state at once. */
const STATUS_ONLY_PUBLISH_MS = 10_000;

export interface AgentOptions {
  cluster: string;
  node: string;
  /** Keys, sequence marks (a host: /var/lib/veil; a lab node: its dir in the cluster's state). */
  stateDir: string;
  /** The status socket (a host: /run/veil/agent.sock). */
  socketPath: string;
  /** Opens a connection to the cluster's registry (the node source and the agent each hold one). */
  openRegistry?: () => Registry;
  /** Where the settings and secrets come from, when not from the registry (Kubernetes: mounted files). */
  openInputs?: () => AgentInputs;
  /** Overrides encryption.wireguard.keylogFile for this agent. */
  wireguardKeylog?: string;
  /** Addresses this node must keep reaching outside the tunnel besides its gateways (the registry's). */
  underlayAddresses?: { ip: string; what: string }[];
  /**
   * The service manager's fd store ($NOTIFY_SOCKET: systemd, or the lab's supervisor): a stop hands
   * the datapath to it, and the next agent takes it from LISTEN_FDS (datapath-handover.ts).
   */
  notifySocket?: string;
  /** The datapath the agent before handed over, already moving packets again (takeHandedOverDatapath). */
  resumed?: ResumedDatapath;
  /** A host agent's record of its runs (restarts, the end of the run before), published with its health. */
  runs?: AgentRuns;
}

/** What peers and the cluster's status act on in the own fields (health details aside). */
function peerFacing(f: OwnFields): string {
  return JSON.stringify([f.annotations, f.encryptionKey, f.agent.ready, f.agent.health.state, f.agent.error]);
}

/** A mode and the tunnel it runs on, of the same engine kind. */
class ModeOnTunnel<K extends EngineKind> {
  /** The desired state of the latest pass that was applied (without its routes and probes). */
  applied?: DesiredState<K>;

  private constructor(readonly mode: EncryptionMode<K>, readonly tunnel: Tunnel<K>) {
    mode.attach?.(tunnel);
  }

  static async open<K extends EngineKind>(mode: EncryptionMode<K>, self: OwnNode, o: TunnelOptions): Promise<ModeOnTunnel<K>> {
    try {
      return new ModeOnTunnel(mode, await Tunnel.open(self, await mode.prepare(), o));
    } catch (e) {
      mode.stop();
      throw e;
    }
  }

  /** One pass: the mode's desired state for these peers, applied to the tunnel. */
  async apply(peers: PeerNode[], publishedKey: number | undefined): Promise<DesiredState<K>> {
    const desired = this.mode.desired(peers, publishedKey);
    await this.tunnel.apply(desired);
    // Kept for what it publishes and its peers: its routes and probes are the tunnel's now (held
    // here, they were ~55 B a peer).
    this.applied = { ...desired, routes: [], probes: [] };
    return desired;
  }

  statusDetail(): string {
    return this.mode.statusDetail(this.applied);
  }

  encryptStatus(publishedKey: number | undefined): Promise<EncryptStatus> {
    return this.mode.encryptStatus(this.tunnel, publishedKey);
  }

  modeMetrics(publishedKey: number | undefined): Promise<ModeMetricsSnapshot> {
    return this.mode.modeMetrics(this.tunnel, publishedKey);
  }

  async stop(): Promise<void> {
    this.mode.stop();
    await this.tunnel.stop();
  }

  /** Stops the datapath and hands its fds and state to the service manager; false when it could not (a cold stop then). */
  async handOver(notifySocket: string, log: Logger): Promise<boolean> {
    this.mode.stop();
    try {
      const h = await this.tunnel.handover();
      storeDatapath(notifySocket, h.tun, h.udp, h.snapshot);
      log.info('datapath handed over', { peers: h.snapshot.state.peers.length });
      return true;
    } catch (e) {
      log.warn('datapath handover failed: the next agent starts cold', { error: errorMessage(e) });
      return false;
    } finally {
      this.tunnel.close();
    }
  }
}

type RunningMode = ModeOnTunnel<'wireguard'> | ModeOnTunnel<'esp'>;

async function openMode(ctx: ModeContext, o: TunnelOptions): Promise<RunningMode> {
  if (ctx.settings['encryption.type'] === 'wireguard') {
    const { WireGuardMode } = await import('./wireguard-mode.js');
    return ModeOnTunnel.open(new WireGuardMode(ctx), ctx.node, o);
  }
  const { IpsecMode } = await import('./ipsec-mode.js');
  return ModeOnTunnel.open(new IpsecMode(ctx), ctx.node, o);
}

export class Agent {
  readonly log: Logger;
  readonly health = new Health();
  readonly startedAt = new Date();
  private readonly source: NodeSource;
  private self?: OwnNode;
  private settingsInForce?: Settings;
  private running?: RunningMode;
  private lease?: LeaseHandle;
  private server?: StatusServer;
  private metricsServer?: MetricsServer;
  private apiServer?: ApiServer;
  private apiFingerprint?: string;
  private timers: NodeJS.Timeout[] = [];
  private reconcileQueued = false;
  /** The wait before retrying a failed pass (0: the last pass went through). */
  private retryMs = 0;
  private retryTimer?: NodeJS.Timeout;
  /** The key id to publish once its jitter has passed (a rotation), and when. */
  private keyHeld?: { key: number | undefined; until: number };
  private lastStatusWrite = 0;
  private reconciling: Promise<void> = Promise.resolve();
  private readonly underlayScreen = new UnderlayScreen<PeerNode>();
  private readonly underlayFacts = new UnderlayFactsReader(TUNNEL_DEVICES);
  private stopped = false;
  private startError?: string;
  private inputs?: AgentInputs;
  private uninstallWatch?: Watch;
  /** The install settings are gone (runAgent then stops the agent with a teardown and exits). */
  onUninstalled?: () => void;

  constructor(private readonly opts: AgentOptions, source?: NodeSource) {
    this.log = createLogger({ node: opts.node });
    if (source) this.source = source;
    else {
      const registry = this.mustOpenRegistry();
      this.source = new WithExternalPeers(new RegistryNodeSource(registry, opts.node), new RegistryPeerObjects(registry));
    }
  }

  private mustOpenRegistry(): Registry {
    if (!this.opts.openRegistry) throw new VeilError('NO_REGISTRY', 'the agent was given neither a registry nor its inputs', 'a bug: report it');
    return this.opts.openRegistry();
  }

  async start(): Promise<void> {
    mapLargeMallocBlocks(); // before the first burst's messages (native/malloc-trim.c)
    this.inputs = this.opts.openInputs?.() ?? registryInputs(this.mustOpenRegistry());
    this.self = await this.source.self();
    try {
      await this.startOn(this.self, this.inputs);
    } catch (e) {
      // stop() reports NotReady with this reason: the installer shows it without reading logs
      this.startError = errorMessage(e);
      throw e;
    }
  }

  private async startOn(self: OwnNode, inputs: AgentInputs): Promise<void> {
    const settings = await inputs.settings();
    if (this.opts.wireguardKeylog) settings['encryption.wireguard.keylogFile'] = this.opts.wireguardKeylog;
    this.settingsInForce = settings;
    const stateDir = this.opts.stateDir;
    ensurePrivateDir(stateDir); // its keys, marks and certificate key are root's alone
    mkdirSync(dirname(this.opts.socketPath), { recursive: true, mode: 0o750 });
    this.log.info('agent starting', { pid: process.pid, version: veilVersion(), encryption: settings['encryption.type'] });

    this.server = new StatusServer(this.opts.socketPath, this);
    await this.server.listen();
    // Metrics on the node IP are optional: a taken port degrades health instead of failing the node.
    const metricsServer = new MetricsServer(self.internalIPs[0]!, settings['agent.metricsPort'], () => this.metrics(), (kind) => this.probe(kind));
    await metricsServer.listen().then(
      () => { this.health.ok('metrics', metricsServer.address); this.metricsServer = metricsServer; },
      (e) => this.health.set('metrics', 'Degraded', `cannot serve metrics on ${metricsServer.address}: ${errorMessage(e)}`),
    );
    await this.serveNetworkApi(self, settings, stateDir, inputs);

    const ctx: ModeContext = { node: self, stateDir, settings, secrets: inputs.secrets, log: this.log, health: this.health, requestReconcile: () => this.queueReconcile() };
    const resumed = this.opts.resumed; // the tunnel takes it over; until it does, stop() stops it
    try {
      this.running = await openMode(ctx, {
        cryptoThreads: settings['datapath.cryptoThreads'], priority: settings['datapath.priority'],
        realtime: settings['datapath.realtime'],
        onSchedulingRefused: (refused) => this.log.warn(schedulingRefusedMessage(refused), {
          ...(refused.priority && { wanted: settings['datapath.priority'], priorityError: refused.priority }),
          ...(refused.realtime && { realtimeError: refused.realtime }),
          hint: schedulingRefusedHint(refused),
        }),
        replacedRoutesFile: replacedRoutesPath(stateDir), probeIntervalMs: parseDuration(settings['agent.healthProbeInterval']),
        onWorkerError: (e) => { this.health.set('datapath', 'Failure', `datapath worker failed: ${errorMessage(e)}`); this.log.error('datapath worker failed', { error: errorMessage(e) }); },
        resumed,
        onHandover: (o) => {
          if (o.resumed) this.log.info('datapath taken over from the agent before: sessions, sequence numbers and replay windows go on', { handoverGapMs: o.gapMs, restartedWithNewSettings: o.restarted });
          else this.log.warn('datapath handover not used: cold start', { reason: o.reason });
        },
      });
      this.running.tunnel.onDrift = (held, wanted) => this.log.warn("the datapath's peer table differed from the desired state: the whole table was sent again", { held, wanted });
      this.health.ok('datapath', `${this.running.mode.device} up`);
    } catch (e) {
      this.health.set('datapath', 'Failure', errorMessage(e));
      throw e;
    }
    // Alive before the first pass: peers take a node as a peer only while its lease lives.
    this.lease = await this.source.holdLiveness(LIVENESS_TTL_SECONDS, { pid: process.pid, bootID: self.bootID, startedAt: this.startedAt.toISOString() },
      (e) => this.log.error('cannot renew the liveness lease: peers will see this node as gone', { error: errorMessage(e) }));
    await this.source.watchPeers(() => this.queueReconcile(), { bootIDs: this.running.mode.readsBootIDs });
    await this.reconcileNow();
    this.uninstallWatch = await inputs.watchUninstall?.(() => this.onUninstalled?.());
    this.log.info('agent ready', { device: this.running.mode.device });

    this.timers.push(setInterval(() => { void this.publish().catch((e) => this.log.warn('publish failed', { error: errorMessage(e) })); }, PUBLISH_CHECK_INTERVAL_MS));
    let resyncs = 0;
    this.timers.push(setInterval(() => {
      if (++resyncs % WHOLE_PASS_EVERY_RESYNCS === 0) this.running?.tunnel.wholeNext();
      this.queueReconcile();
    }, RESYNC_INTERVAL_MS));
    // One call trims every thread's arena (the datapath worker's and V8's helpers' too): what the
    // steady state's work frees goes back within the interval; a compaction's, at the compactor's next quiet check (heap-compaction.ts).
    this.timers.push(setInterval(returnFreedMalloc, MALLOC_TRIM_INTERVAL_MS));
    this.timers.push(compactWhenQuiet((c) => this.log.debug('heap compacted', { heapMB: +(c.policy.floor / 1048576).toFixed(1), compactions: c.count }), returnFreedMalloc));
  }

  /** The status API over HTTPS on the node IP, for a CLI elsewhere; like metrics, a failure degrades health. */
  private async serveNetworkApi(self: OwnNode, settings: Settings, stateDir: string, inputs: AgentInputs): Promise<void> {
    const internalIP = self.internalIPs[0]!;
    try {
      const certificate = await loadOrCreateApiCertificate(stateDir, this.opts.node, internalIP);
      const tokens = new ApiTokenSource(inputs.secrets);
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

  /** The kubelet's probes: alive while not stopped; ready once the datapath runs and nothing failed. */
  probe(kind: 'healthz' | 'readyz'): { ok: boolean; detail: string } {
    if (this.stopped) return { ok: false, detail: 'stopping' };
    if (kind === 'healthz') return { ok: true, detail: 'ok' };
    if (!this.running) return { ok: false, detail: this.startError ?? 'starting' };
    const failed = this.health.problems().filter((c) => c.state === 'Failure');
    return failed.length ? { ok: false, detail: failed.map((c) => `${c.name}: ${c.message}`).join('; ') } : { ok: true, detail: `ready: ${this.health.state()}` };
  }

  /** Requests the network API refused, by reason (for the metrics). */
  apiRefusals(): Record<string, number> {
    return { ...(this.apiServer?.refused ?? {}) };
  }

  get node(): OwnNode | undefined {
    return this.self;
  }

  get settings(): Settings | undefined {
    return this.settingsInForce;
  }

  get encryption(): EncryptionMode<'wireguard'> | EncryptionMode<'esp'> | undefined {
    return this.running?.mode;
  }

  /** The `Encryption:` line's parts. */
  encryptionSummary(): Healthz['encryption'] | undefined {
    const r = this.running;
    return r && { mode: ciliumModeName(r.mode.type), device: r.mode.device, detail: r.statusDetail() };
  }

  async encryptStatus(): Promise<EncryptStatus> {
    return this.mustRun().encryptStatus(this.source.published()?.encryptionKey);
  }

  /** GET /memory: both threads' heaps (the worker's first, so a collection there also shows in the RSS read after), then the process's RSS. */
  async memory(collect: boolean): Promise<AgentMemory> {
    const datapath = await this.running?.tunnel.workerMemory(collect);
    const main = heapFigures(collect);
    const status = readFileSync('/proc/self/status', 'utf8');
    const kB = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { rssBytes: kB('VmRSS'), rssAnonBytes: kB('RssAnon'), main, ...(datapath && { datapath }), malloc: mallocStats() };
  }

  mustTunnel(): Tunnel<'wireguard'> | Tunnel<'esp'> {
    return this.mustRun().tunnel;
  }

  private mustRun(): RunningMode {
    if (!this.running) throw new VeilError('NO_TUNNEL', 'the agent has no tunnel (its start failed)', "see 'veil agent logs NODE'");
    return this.running;
  }

  private queueReconcile(): void {
    if (this.reconcileQueued || this.stopped) return;
    this.reconcileQueued = true;
    setTimeout(() => {
      this.reconcileQueued = false;
      this.reconciling = this.reconciling.then(() => this.reconcileNow()).then(() => { this.retryMs = 0; }, (e) => {
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs ? this.retryMs * 2 : RETRY_FIRST_MS);
        this.log.error('reconcile failed', { error: errorMessage(e), retryInMs: this.retryMs });
        this.retryTimer ??= setTimeout(() => { this.retryTimer = undefined; this.queueReconcile(); }, this.retryMs).unref();
      });
    }, 50);
  }

  /** One pass: the mode's desired state for the peers, applied, then published. */
  private async reconcileNow(): Promise<void> {
    const keyBefore = this.source.published()?.encryptionKey;
    // Read each pass: no peer's prefix may be routed over what the node itself stands on.
    const screened = this.underlayScreen.screen(this.source.peers(), this.underlayFacts.read(this.opts.underlayAddresses));
    let desired: DesiredState;
    try {
      desired = await this.mustRun().apply(screened.admitted, keyBefore);
      this.health.clear('reconcile');
    } catch (e) {
      this.health.set('reconcile', 'Degraded', errorMessage(e));
      throw e;
    }
    this.health.replaceGroup('peer ', new Map([...this.source.refusedPeers(), ...screened.refused, ...desired.problems]));
    await this.publish();
  }

  private agentStatus(ready: boolean): PublishedAgentStatus {
    const error = this.startError;
    const problems = this.health.problems().map((c) => `${c.name}: ${c.message}`);
    return {
      ready: ready && this.health.state() !== 'Failure', pid: process.pid, bootID: this.self!.bootID, startedAt: this.startedAt.toISOString(), version: veilVersion(),
      health: { state: this.health.state(), problems }, encryption: this.encryptionSummary(), ...(error ? { error } : {}),
      ...(this.apiServer ? { apiAddress: this.apiServer.address, apiFingerprint: this.apiFingerprint } : {}),
      ...(this.opts.runs ? { supervision: { restarts: this.opts.runs.restarts, state: 'running', ...(this.opts.runs.lastExit ? { lastExit: this.opts.runs.lastExit } : {}) } } : {}),
    };
  }

  /** What the last applied pass publishes, with a new key id held back for its jitter (see KEY_PUBLISH_JITTER_MAX_MS). */
  private publication(): DesiredState['publish'] | undefined {
    const applied = this.running?.applied;
    if (!applied) return undefined;
    const next = applied.publish;
    const current = this.source.published();
    if (!current || current.encryptionKey === undefined || current.encryptionKey === next.encryptionKey) { this.keyHeld = undefined; return next; }
    const now = Date.now();
    if (this.keyHeld?.key !== next.encryptionKey) {
      const spread = Math.min(KEY_PUBLISH_JITTER_MAX_MS, applied.datapathPeers.length); // 1 ms per peer
      const held = { key: next.encryptionKey, until: now + Math.random() * spread };
      this.keyHeld = held;
      if (spread > 0) setTimeout(() => { void this.publish().catch((e) => this.log.warn('publish failed', { error: errorMessage(e) })); }, held.until - now + 5).unref();
    }
    if (now < this.keyHeld!.until) return { ...next, encryptionKey: current.encryptionKey };
    return next;
  }

  /**
   * Publishes the own fields; the node source writes only what changed. What peers use (keys, key
   * id, ready) and a change of health state go at once; health details alone at most every
   * STATUS_ONLY_PUBLISH_MS, so that a cluster's status churn does not wake every agent's watch.
   */
  private async publish(ready = true): Promise<void> {
    this.running?.tunnel.reportProbes(this.health);
    const fields: OwnFields = { agent: this.agentStatus(ready), annotations: {} };
    const pub = this.publication();
    if (pub) {
      fields.annotations = pub.annotations;
      fields.encryptionKey = pub.encryptionKey;
    }
    const now = Date.now();
    const stored = this.source.published();
    // Against what the source wrote last, not what this agent meant to: the gate never holds back a change peers use.
    if (ready && stored && peerFacing(stored) === peerFacing(fields) && now - this.lastStatusWrite < STATUS_ONLY_PUBLISH_MS) return;
    const keyBefore = stored?.encryptionKey;
    await this.source.publish(fields);
    this.lastStatusWrite = now;
    // Our own published key id moved (a new IPsec key, once its jitter passed): the pairing with every peer may move too.
    if (this.source.published()?.encryptionKey !== keyBefore) this.queueReconcile();
  }

  private readonly prometheus = new AgentMetrics(this);

  /** The Prometheus text exposition of this agent (GET /metrics). */
  metrics(): Promise<string> {
    return this.prometheus.render();
  }

  async modeMetrics(): Promise<ModeMetricsSnapshot | undefined> {
    return this.running?.modeMetrics(this.source.published()?.encryptionKey);
  }

  /**
   * Stops the agent. With `handOver` (a SIGTERM under a service manager with an fd store) the
   * datapath keeps moving packets until everything else is done, and then hands its fds and state
   * to the fd store for the next agent: the gap is as short as it can be.
   */
  async stop(opts: { handOver?: boolean; teardown?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.underlayFacts.close();
    this.uninstallWatch?.stop();
    await this.reconciling.catch(() => undefined);
    const handOver = opts.handOver && !opts.teardown && this.opts.notifySocket && this.running && !this.startError ? this.opts.notifySocket : undefined;
    if (!handOver) {
      try { await this.running?.stop(); } catch (e) { this.log.warn('datapath stop failed', { error: errorMessage(e) }); }
    }
    if (opts.teardown) {
      // uninstalled: the host goes back to its plaintext routing, as it was before veil
      const failed = removeTunnelState({ replacedRoutesFile: replacedRoutesPath(this.opts.stateDir) });
      if (failed.length) this.log.warn('some routes the tunnel replaced could not be put back', { failed });
      this.log.info('tunnel removed: devices, fail-closed routes and rules gone, the replaced routes put back');
    }
    await stopResumed(this.opts.resumed); // resumed, but the start failed before the tunnel took it
    if (this.self) {
      // NotReady (with the reason if the start failed); a failed publish never hides that reason
      try { await this.publish(false); } catch (e) { this.log.warn('publish failed', { error: errorMessage(e) }); }
    }
    // A clean stop lets the lease lapse (within its TTL) rather than deleting it: an agent restarted
    // meanwhile takes it over and its peers never drop it. A failed start gives it up at once.
    if (this.startError || opts.teardown) { try { await this.lease?.release(); } catch { /* it lapses by itself within its TTL */ } }
    await this.server?.close();
    await this.metricsServer?.close();
    await this.apiServer?.close();
    this.source.close();
    this.inputs?.close();
    if (handOver) await this.running!.handOver(handOver, this.log);
    this.log.info('agent stopped');
  }
}

/** $NOTIFY_SOCKET (the service manager's fd store), removed from the environment: it is for this process, not its children. */
export function takeNotifySocket(): string | undefined {
  const s = process.env['NOTIFY_SOCKET'];
  delete process.env['NOTIFY_SOCKET'];
  return s;
}

/**
 * First thing in `veil agent run`: the datapath the agent before handed over, moving packets again
 * before this agent's checks, registry and settings (seconds on a loaded machine). A refusal (another
 * version, unreadable state) is logged: the agent starts cold.
 */
export async function resumeDatapathEarly(node: string, notifySocket: string | undefined): Promise<ResumedDatapath | undefined> {
  const r = await resumeHandedOverDatapath(process.env, notifySocket);
  const log = createLogger({ node });
  if ('refused' in r) log.warn('datapath handover not used: cold start', { reason: r.refused });
  if ('resumed' in r) log.info('datapath resumed from the agent before', { handoverGapMs: r.resumed.resumedAtUnixMs - r.resumed.snapshot.exportedAtUnixMs });
  return 'resumed' in r ? r.resumed : undefined;
}

/** The agent's exit status after an uninstall took its settings away (systemd's Restart=on-failure starts it again). */
export const EXIT_UNINSTALLED = 1;

/** `veil agent run`: runs until SIGTERM/SIGINT, or until veil is uninstalled. */
export async function runAgent(opts: AgentOptions, source?: NodeSource): Promise<number> {
  process.title = `veil-agent-${opts.node}`;
  // The service manager's fd store (systemd's sd_notify protocol): for this process, not its children.
  const notifySocket = opts.notifySocket ?? takeNotifySocket();
  if (notifySocket) opts = { ...opts, notifySocket };
  const agent = new Agent(opts, source);
  let done: (code: number) => void = () => undefined;
  const finished = new Promise<number>((r) => { done = r; });
  const shutdown = (sig: string) => {
    agent.log.info('signal received', { signal: sig });
    // SIGTERM is how a service manager stops (and restarts) a service: hand the datapath over.
    void agent.stop({ handOver: sig === 'SIGTERM' }).then(() => done(0), () => done(1));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  agent.onUninstalled = () => {
    // As at a start without an install: exit 1, and the service manager's restarts wait for the next install.
    agent.log.warn('veil was uninstalled (the install settings are gone): removing the tunnel and exiting');
    void agent.stop({ teardown: true }).then(() => done(EXIT_UNINSTALLED), () => done(1));
  };
  try {
    await agent.start();
  } catch (e) {
    agent.log.error('agent failed to start', { error: errorMessage(e) });
    await agent.stop().catch(() => undefined);
    rmSync(opts.socketPath, { force: true });
    return 1;
  }
  return finished;
}

/** One warning for what the kernel refused the datapath worker (both, without CAP_SYS_NICE). */
function schedulingRefusedMessage(refused: { priority?: string; realtime?: string }): string {
  if (refused.priority && refused.realtime) return 'datapath worker not raised: it runs at nice 0 and SCHED_OTHER, never realtime while idle';
  return refused.priority ? 'datapath priority not raised: the worker runs at nice 0' : 'datapath worker not realtime while idle: it stays SCHED_OTHER';
}

function schedulingRefusedHint(refused: { priority?: string; realtime?: string }): string {
  const silence = [...(refused.priority ? ['datapath.priority=0'] : []), ...(refused.realtime ? ['datapath.realtime=false'] : [])].join(' and ');
  return `grant the agent CAP_SYS_NICE (the systemd unit and the DaemonSet do), or set ${silence} to silence this`;
}
