// The node's tunnel, the same for every encryption mode: the persistent TUN device, the UDP
// socket, the datapath worker, the health prober and the routes that steer remote prefixes into
// the device. A mode only says what it should hold (DesiredState); apply() makes it so, by
// difference: the worker gets the peers that changed, the routes that moved go in one netlink
// exchange from the addon, so an event costs what changed, not the cluster. A whole pass now and
// then is the safety net.
import { UdpSocket } from '../datapath/udp-socket.js';
import { RawEspSocket } from '../datapath/raw-esp-socket.js';
import type { TunDevice } from '../datapath/tun-device.js';
import { DatapathHost } from '../datapath/datapath-host.js';
import type { HeapFigures } from '../util/heap-figures.js';
import { AppliedPeers, type AppliedSpecsObserver } from './applied-peers.js';
import { RoutedPrefixes } from './routed-prefixes.js';
import { WORKER_YOUNG_GENERATION_MB } from './agent-heap.js';
import { EspSpecsDigest } from '../datapath/esp-table-digest.js';
import { WireGuardSpecsDigest } from '../datapath/wireguard-table-digest.js';
import type { EngineKind, EspPeerSpec, ProtocolOf, ReplyTo, RequestOf, WireGuardPeerSpec, WorkerInit } from '../datapath/messages.js';
import type { Health } from './health.js';
import { HealthProber, type PeerHealth, type ProbeTarget } from './health-prober.js';
import type { OwnNode } from './node-source.js';
import { configureTunnelDevice, openTunnelDevice } from './tunnel-device.js';
import { handoverMismatch, type ResumedDatapath } from './datapath-handover.js';
import { makeSnapshot, sameEngineInit, type DatapathSnapshot, type EngineInitOf } from '../datapath/datapath-snapshot.js';
import { ReplacedRoutes } from './replaced-routes.js';
import { keepTunnelTrafficOnUnderlay, listTunnelRoutes, releasePrefixes, routesToMend, steerIntoTunnel } from './routes.js';

/** The worker's init message of engine K without what the tunnel adds (its device, socket, MTU). */
export type EngineParams<K extends EngineKind> = Omit<Extract<WorkerInit, { kind: K }>, 'tun' | 'udp' | 'cryptoThreads' | 'priority' | 'realtime' | 'mtu'>;

/** The engine's peers (what its setPeers request carries). */
export type PeerSpecsOf<K extends EngineKind> = K extends 'wireguard' ? WireGuardPeerSpec[] : EspPeerSpec[];

/** A peer's identity in the datapath: WireGuard's public key, ESP's peer IP. */
function specId(spec: WireGuardPeerSpec | EspPeerSpec): string {
  return 'publicKey' in spec ? spec.publicKey : spec.ip;
}


/** How a mode wants its tunnel opened. */
export interface TunnelParams<K extends EngineKind> {
  device: string;
  mtu: number;
  /** The UDP port on the node's internal IP. */
  port: number;
  /** IPsec without UDP encapsulation: a raw ESP socket (IP protocol 50) instead of the UDP port. */
  rawEsp?: boolean;
  /** The engine's own part of the worker's init message (kind, keys, ...). */
  engine: EngineParams<K>;
  /** Node encryption routes node IPs into the tunnel: its own datagrams must stay on the underlay. */
  bypassUnderlay?: boolean;
}

/**
 * A route into the tunnel device: its prefix, or the prefix with a preferred source (node IPs keep
 * the node's own IP, not the tunnel device's). A prefix without a source is its string: IPsec's
 * routes are its peers' pod CIDRs as they are, with no object per route nor a map to keep them
 * from one pass to the next (~85 B a peer).
 */
export type TunnelPrefix = string | { prefix: string; src?: string };

/** What the tunnel should hold for the current set of peers: a mode's pure answer. */
export interface DesiredState<K extends EngineKind = EngineKind> {
  /** The engine's peers (WireGuard peers or ESP peers with their SAs). */
  datapathPeers: PeerSpecsOf<K>;
  /**
   * A spec's slot: its peer's (PeerNode.slot), which the mode keeps its specs by too: a peer keeps
   * its slot while it stays, two peers of one pass never share one. The tunnel keeps what it applied by these
   * slots, not in a map of its own that held the same peers again (~46 B a peer).
   */
  slotOf(spec: PeerSpecsOf<K>[number]): number;
  /**
   * A spec as the worker is sent it, where a mode keeps its specs in a form a message does not carry
   * whole (IPsec's make their SAs when read: a structured clone takes own data properties only);
   * also what two specs are compared by. None: the spec itself.
   */
  messageOf?(spec: PeerSpecsOf<K>[number]): PeerSpecsOf<K>[number];
  /** Every prefix routed into the tunnel (fail-closed); the device's other routes are removed. A prefix twice: routed once, its last source wins. */
  routes: TunnelPrefix[];
  /** Probe targets: the peers (each at its pod gateway; an external peer is not probed), the pass's own array: no table of them is made. */
  probes: readonly ProbeTarget[];
  /** Per-peer problems ('peer NAME' -> reason); they replace the previous pass's. */
  problems: Map<string, string>;
  /** What this node publishes once the pass is applied (keys, key id). */
  publish: { annotations: Record<string, string | null>; encryptionKey?: number };
}

export interface TunnelOptions {
  cryptoThreads: number;
  /** The datapath worker's nice value (datapath.priority). */
  priority: number;
  /** The worker runs SCHED_FIFO while it moves little (datapath.realtime). */
  realtime: boolean;
  /**
   * Once, when the kernel refused the worker its priority (it runs at nice 0) or SCHED_FIFO (it
   * stays SCHED_OTHER), or both (no CAP_SYS_NICE): the errno names.
   */
  onSchedulingRefused?: (refused: { priority?: string; realtime?: string }) => void;
  probeIntervalMs: number;
  /** The worker died: the agent reports it (the device stays, packets wait, nothing leaks). */
  onWorkerError: (e: unknown) => void;
  /** The datapath the agent before handed over, already running again: the tunnel goes on with it if it fits (else it stops). */
  resumed?: ResumedDatapath;
  /** What became of `resumed`: taken (gapMs: no packet moved that long), or the reason it was not (then the tunnel starts cold). */
  onHandover?: (outcome: { resumed: true; gapMs: number; restarted: boolean } | { resumed: false; reason: string }) => void;
  /** Where the routes that steering replaces are recorded, for an uninstall to put back (replaced-routes.ts). */
  replacedRoutesFile?: string;
}

/** The datapath a stopping tunnel hands over: its fds and the snapshot of its state. */
export interface HandedOver {
  tun: TunDevice;
  udp: UdpSocket;
  snapshot: DatapathSnapshot;
}

export class Tunnel<K extends EngineKind = EngineKind> {
  private constructor(
    readonly device: string,
    private readonly tun: TunDevice,
    private readonly udp: UdpSocket,
    private readonly host: DatapathHost<K>,
    private readonly prober: HealthProber,
    private readonly replaced?: ReplacedRoutes,
  ) {}

  static async open<K extends EngineKind>(node: OwnNode, p: TunnelParams<K>, o: TunnelOptions): Promise<Tunnel<K>> {
    const localIp = node.internalIPs[0]!;
    const kind = (p.engine as { kind: K }).kind; // EngineParams<K> keeps the init's kind
    if (o.resumed) o.resumed.taken = true;
    const resumed = o.resumed && await Tunnel.takeOver(o.resumed, kind, p, localIp, o);
    const device = { name: p.device, mtu: p.mtu, address: node.podGateway };
    if (resumed) configureTunnelDevice(device);
    const tun = resumed ? resumed.tun : openTunnelDevice(device);
    let udp: UdpSocket | undefined;
    let host: DatapathHost<K> | undefined;
    try {
      udp = resumed ? resumed.udp : p.rawEsp ? RawEspSocket.openEsp(localIp)
        : UdpSocket.open(localIp, p.port, { gso: true, gro: true }); // UDP_SEGMENT / UDP_GRO: one syscall per run of datagrams
      if (p.bypassUnderlay) keepTunnelTrafficOnUnderlay(p.port, node.underlayInterface);
      const init = { ...p.engine, tun: tun.describe(), udp: udp.describe(), cryptoThreads: o.cryptoThreads, priority: o.priority, realtime: o.realtime, mtu: p.mtu } as Extract<WorkerInit, { kind: K }>; // EngineParams<K> plus exactly the omitted fields
      if (resumed) {
        // takeOver() checked that the resumed datapath runs kind K.
        const same = sameEngineInit(resumed.snapshot.engine, Tunnel.engineInit(init));
        // Started again with what it ran with: the agent's own settings (a new key, MTU) take over by one more handover, in this process.
        host = same ? resumed.host as unknown as DatapathHost<K> : new DatapathHost<K>({ ...init, resume: await resumed.host.handover() }, o.onWorkerError, WORKER_YOUNG_GENERATION_MB);
        host.onFatal = o.onWorkerError;
        await host.whenReady();
        Tunnel.reportRefusals(host, o);
        o.onHandover?.({ resumed: true, gapMs: resumed.resumedAtUnixMs - resumed.snapshot.exportedAtUnixMs, restarted: !same });
      } else {
        host = new DatapathHost<K>(init, o.onWorkerError, WORKER_YOUNG_GENERATION_MB);
        await host.whenReady();
        Tunnel.reportRefusals(host, o);
      }
      const prober = new HealthProber(node.name, node.podGateway, o.probeIntervalMs);
      await prober.start();
      return new Tunnel(p.device, tun, udp, host, prober, o.replacedRoutesFile ? new ReplacedRoutes(o.replacedRoutesFile, p.device) : undefined);
    } catch (e) {
      await host?.stop().catch(() => undefined);
      await resumed?.host.stop().catch(() => undefined); // not taken over yet (a stopped one returns at once)
      udp?.close();
      tun.close();
      throw e;
    }
  }

  private static reportRefusals(host: { priorityRefused?: string; realtimeRefused?: string }, o: TunnelOptions): void {
    if (host.priorityRefused || host.realtimeRefused) {
      o.onSchedulingRefused?.({ ...(host.priorityRefused && { priority: host.priorityRefused }), ...(host.realtimeRefused && { realtime: host.realtimeRefused }) });
    }
  }

  private static engineInit<K extends EngineKind>(init: Extract<WorkerInit, { kind: K }>): EngineInitOf<K> {
    const { tun: _t, udp: _u, resume: _r, ...engine } = init;
    return engine as EngineInitOf<K>; // the init without exactly the omitted fields
  }

  /** The handed-over datapath if it fits this tunnel; else it stops (a clean stop), its fds close and the reason is reported. */
  private static async takeOver(a: ResumedDatapath, kind: EngineKind, p: TunnelParams<EngineKind>, localIp: string, o: TunnelOptions): Promise<ResumedDatapath | undefined> {
    const reason = handoverMismatch(a, kind, p.device, localIp, p.rawEsp ? 0 : p.port, !!p.rawEsp);
    if (!reason) return a;
    await a.host.stop();
    a.tun.close();
    a.udp.close();
    o.onHandover?.({ resumed: false, reason });
    return undefined;
  }

  /** A request to the datapath worker (status, counters). */
  request<R extends RequestOf<ProtocolOf[K]>>(msg: R): Promise<ReplyTo<ProtocolOf[K], R>> {
    return this.host.request(msg);
  }

  /** The datapath worker's heap (the agent's /memory). */
  workerMemory(collect: boolean): Promise<HeapFigures> {
    return this.host.memory(collect);
  }

  /**
   * What the worker holds, as last applied: spec by the mode's slot (DesiredState.slotOf), kept
   * and marked pass after pass (what no pass marked is what went): at 5,000 peers, the maps made
   * anew each pass were ~2.3 MB of garbage per event.
   */
  private appliedPeers = new AppliedPeers<WireGuardPeerSpec | EspPeerSpec>(specId);
  /** The prefixes routed, as the last pass listed them (routed-prefixes.ts). */
  private readonly routed = new RoutedPrefixes();
  private passes = 0;
  /** The digest of the specs in appliedPeers (the engine's kind's), kept spec by spec as they come, change and go. */
  private specsDigest?: EspSpecsDigest | WireGuardSpecsDigest;
  /** The fingerprint of the routing table's listing when a whole pass last found it in place; forgotten whenever a pass moves a route. */
  private routesInPlace?: string;
  /** The next pass is whole: the first, the one after a failure, and the one asked for (wholeNext). */
  private wholeAsked = true;
  private failed = false;

  /**
   * The next pass checks the whole table (by digest, sending it if it differs)
   * and mends the routes the table lacks (the safety net): the agent asks for it on a fixed cycle
   * (every second resync), so its cost recurs at a known period.
   */
  wholeNext(): void {
    this.wholeAsked = true;
  }

  /**
   * Peers/SAs first (inbound keys in place before anything is published), then routes and probes.
   * Only what differs from the last pass is sent; a whole pass (the table, every route, the
   * device's stale routes removed) runs first, after a failure and when asked for (wholeNext),
   * where the datapath is sent the table only if its digest shows it differs.
   */
  async apply(d: DesiredState<K>): Promise<void> {
    const whole = this.wholeAsked || this.failed;
    const periodic = !this.failed && this.passes > 0; // asked for by wholeNext(), not a first pass nor a retry
    this.wholeAsked = false;
    const pass = ++this.passes;
    this.failed = true; // until this pass is through: a failure anywhere makes the next one whole
    const specs: readonly (WireGuardPeerSpec | EspPeerSpec)[] = d.datapathPeers;
    const message = (d.messageOf ?? sameSpec) as (s: WireGuardPeerSpec | EspPeerSpec) => WireGuardPeerSpec | EspPeerSpec;
    const digest = this.specsDigest ??= this.host.init.kind === 'esp' ? new EspSpecsDigest() : new WireGuardSpecsDigest();
    const { upsert, remove } = this.appliedPeers.update(specs, d.slotOf as (s: WireGuardPeerSpec | EspPeerSpec) => number, message, pass, digest as AppliedSpecsObserver<WireGuardPeerSpec | EspPeerSpec>);
    // The periodic whole pass sends what changed, then asks whether the datapath holds the table (a
    // digest each side: esp-table-digest.ts, wireguard-table-digest.ts, of the table as given, which
    // a WireGuard engine's own key moves and roaming leave as it is) and sends it only if not. The
    // first pass and one after a failure send it.
    const check = whole && periodic;
    // The table as the worker is sent it, made at most once a pass: a periodic pass that counts its
    // digest again reads the messages a resend then sends (each spec's SAs were made twice, and a
    // whole-table resend at 5,000 peers allocated ~2.5 MB).
    let messages: readonly (WireGuardPeerSpec | EspPeerSpec)[] | undefined;
    const tableNow = () => (messages ??= d.messageOf ? specs.map(message) : specs);
    const setPeers = () => this.host.request({ type: 'setPeers', peers: tableNow() } as unknown as RequestOf<ProtocolOf[K]>); // PeerSpecsOf<K> is K's setPeers payload
    if (whole && !check) await setPeers();
    else {
      if (upsert.length || remove.length) await this.host.request({ type: 'updatePeers', upsert, remove } as unknown as RequestOf<ProtocolOf[K]>);
      if (check && !await this.datapathHolds(tableNow)) await setPeers();
    }
    // Steer every remote node's prefixes into the tunnel whether or not its peer is configured yet:
    // traffic to a node without a peer is dropped in the datapath, never sent in plaintext.
    const { steer, stale } = this.routed.update(d.routes);
    // A whole pass reads the table and mends what differs (a route gone, moved or without its
    // blackhole), rather than steering every prefix again (at 5,000 peers 10,000 `ip` lines, ~135 ms
    // of CPU a minute for routes that were all in place). A periodic one whose listing is, byte for
    // byte, the one an earlier pass found in place, with no route moved since, has nothing to mend
    // and does not read it (~40 ms a minute warm at 5,000 peers, far more in a cold agent); any
    // change to the table (a route deleted, replaced, added to the device) changes the listing.
    const listing = whole ? listTunnelRoutes(this.device) : undefined;
    const table = listing && !(periodic && listing.fingerprint === this.routesInPlace) ? listing.read() : undefined;
    const toSteer = table ? routesToMend(d.routes, table) : steer;
    if (toSteer.length) {
      this.routesInPlace = undefined;
      this.replaced?.recordBefore(toSteer.map((r) => r.prefix)); // the routes a steer replaces, for an uninstall
      steerIntoTunnel(toSteer.map((r) => ({ prefix: r.prefix, device: this.device, src: r.src })));
    }
    if (table) {
      const wanted = this.routed.prefixes();
      for (const p of table.routed.keys()) if (!wanted.has(p)) stale.push(p);
    }
    if (stale.length) this.routesInPlace = undefined;
    releasePrefixes([...new Set(stale)], this.device);
    if (toSteer.length || stale.length) this.replaced?.afterSteering();
    if (table && !toSteer.length && !stale.length) this.routesInPlace = listing!.fingerprint; // read and found in place
    this.prober.setPeers(d.probes);
    this.failed = false;
  }

  private digestChecks = 0;

  /**
   * Whether the datapath holds exactly the applied peers, by digest: the worker makes its own
   * from what it holds after each peer update (and every FULL_DIGEST_EVERY-th check anyway); the
   * specs' is kept as they change. When they differ the specs' is counted
   * again in full first, from `table` (the applied specs as the worker is sent them: a slip in its
   * keeping must not resend the table every minute). A difference then is drift: reported, and the
   * caller resends.
   */
  private async datapathHolds(table: () => readonly (WireGuardPeerSpec | EspPeerSpec)[]): Promise<boolean> {
    const full = this.digestChecks++ % FULL_DIGEST_EVERY === 0;
    const { digest } = await (this.host.request({ type: 'digest', full } as unknown as RequestOf<ProtocolOf[K]>) as Promise<{ digest: string }>); // both engines answer a digest request
    const kept = this.specsDigest! as AppliedSpecsObserver<WireGuardPeerSpec | EspPeerSpec> & { clear(): void; readonly value: string }; // made by this pass, of the engine's kind
    if (digest === kept.value) return true;
    kept.clear();
    const messages = table();
    for (let i = 0; i < messages.length; i++) kept.add(messages[i]!);
    const wanted = kept.value;
    if (digest === wanted) return true;
    this.tablesResent++;
    this.onDrift?.(digest, wanted);
    return false;
  }

  /** Whole tables a periodic pass sent because the datapath's differed from the desired state. */
  tablesResent = 0;
  /** Told when a periodic pass found the datapath's table differing from the desired state (then resent). */
  onDrift?: (held: string, wanted: string) => void;

  /** Sets the 'node-connectivity' check from the probes. */
  reportProbes(health: Health): void {
    this.prober.reportTo(health);
  }

  probes(): PeerHealth[] {
    return this.prober.list();
  }

  /**
   * Stops the worker for a handover: no packet moves after its state is taken, and the fds stay
   * open for the caller to hand over (then close()). Rejects when the worker could not answer.
   */
  async handover(): Promise<HandedOver> {
    this.prober.stop();
    const resume = await this.host.handover();
    return { tun: this.tun, udp: this.udp, snapshot: makeSnapshot(this.host.init, resume) };
  }

  /** Closes this process's fds of the tunnel (after a handover or a failed one). */
  close(): void {
    this.udp.close();
    this.tun.close();
    this.replaced?.close();
  }

  /** Stops the worker; device and routes stay, so a restart loses nothing and leaks nothing. */
  async stop(): Promise<void> {
    this.prober.stop();
    await this.host.stop();
    this.udp.close();
    this.tun.close();
    this.replaced?.close();
  }
}

/**
 * Every how many periodic checks the datapath makes its digest from its whole table even with no
 * peer update since it last did: what no message changed (a slip in the engine's own code) is found
 * within ~10 minutes, what a message changed at the next whole pass.
 */
const FULL_DIGEST_EVERY = 10;

/** A spec that is its own message (DesiredState.messageOf's default). */
const sameSpec = <S>(spec: S): S => spec;

