// WireGuard mode of the agent: the node's key pair, and from the peers (public key annotation,
// node IP endpoint, pod CIDRs + node IPs allowed) the tunnel's peers and the routes that steer
// remote pod CIDRs (and node IPs with node encryption) into veil_wg0.
import { performance } from 'node:perf_hooks';
import type { WireGuardEngineStatus, WireGuardPeerSpec } from '../datapath/messages.js';
import { hostPrefix } from '../net/cidr.js';
import type { EncryptionMode, ModeContext } from './encryption-mode.js';
import type { PeerNode } from './node-source.js';
import { ciliumModeName, parseDuration } from './settings.js';
import type { DesiredState, Tunnel, TunnelParams, TunnelPrefix } from './tunnel.js';
import { forgetUnmarked } from '../util/forget-unmarked.js';
import { SlottedTable } from '../util/slotted-table.js';
import { eachOf, listOf } from '../util/one-or-more.js';
import type { ModeMetricsSnapshot } from './metrics.js';
import type { WireGuardEncryptStatus } from './api.js';
import { WG_ACCEPTS_ANNOTATION, WG_NEXT_PUBKEY_ANNOTATION, WireGuardKeyRotation } from './wireguard-key-rotation.js';

export const WG_DEVICE = 'veil_wg0';
export const WG_PORT = 51871;
/** Cilium's MTU overhead for WireGuard: 32 (message) + 40 (outer IP) + 8 (UDP). */
export const WG_MTU_OVERHEAD = 80;
export const WG_PUBKEY_ANNOTATION = 'network.veil.io/wg-pub-key';
/** The encryption key id a WireGuard node publishes (spec.encryption.key), as Cilium's nodes do. */
export const WG_ENCRYPTION_KEY = 255;

/** Standard base64 of 32 bytes, not all zero. */
function validKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(key) && !/^A{43}=$/.test(key);
}

export class WireGuardMode implements EncryptionMode<'wireguard'> {
  readonly type = 'wireguard' as const;
  readonly device = WG_DEVICE;
  /** The node's key pair and its rotation; unset until prepare() has loaded the key file (a start can fail before that). */
  private rotation?: WireGuardKeyRotation;
  /**
   * Kept and marked pass after pass (forget-unmarked.ts), as in the IPsec mode, so that a pass
   * allocates nothing per unchanged peer: each peer's spec and what it was made from (the same
   * spec object tells the tunnel it is unchanged), which peer holds each public key this pass
   * (current and next keys: a key two peers publish is refused to the later one), each prefix's route.
   * The specs' slots are the tunnel's too (DesiredState.slotOf): one map of the peers, not two.
   */
  private specs = new SlottedTable<string, { peer: PeerNode; keepalive: number; next: string | undefined; spec: WireGuardPeerSpec; slot: number }>();
  private holders = new Map<string, { name: string; pass: number }>();
  private routeOf = new Map<string, { route: { prefix: string; src?: string }; pass: number }>();
  private passes = 0;
  /** A spec's slot in the table (DesiredState.slotOf): every spec handed out is in it, by its peer's name. */
  private readonly slotOf = (s: WireGuardPeerSpec): number => this.specs.get(s.name!)!.slot;

  constructor(private readonly ctx: ModeContext) {}

  private get nodeEncryption(): boolean {
    return this.ctx.settings['encryption.nodeEncryption'];
  }

  async prepare(): Promise<TunnelParams<'wireguard'>> {
    const c = this.ctx;
    this.rotation = new WireGuardKeyRotation(c.stateDir, WG_DEVICE, c.node.name, {
      log: c.log, secrets: c.secrets, requestReconcile: c.requestReconcile,
      intervalMs: parseDuration(c.settings['encryption.wireguard.keyRotationInterval']),
    });
    const keys = this.rotation.current;
    c.log.info(keys.generated ? 'generated a new WireGuard key pair' : 'loaded the WireGuard key pair', { publicKey: keys.publicKeyBase64 });
    const keylog = c.settings['encryption.wireguard.keylogFile'].replace('{node}', c.node.name);
    return {
      device: WG_DEVICE, mtu: c.node.underlayMtu - WG_MTU_OVERHEAD, port: WG_PORT, bypassUnderlay: this.nodeEncryption,
      engine: { kind: 'wireguard', privateKey: keys.privateKey, keylogFile: keylog || undefined, wallClockOffsetMs: Date.now() - performance.now() },
    };
  }

  /** The tunnel is up: rotation requests and the schedule are followed from now on. */
  attach(tunnel: Tunnel<'wireguard'>): void {
    void this.rotation?.start(tunnel);
  }

  desired(peers: PeerNode[]): DesiredState<'wireguard'> {
    const rotation = this.rotation!; // desired runs only after a successful prepare
    const own = rotation.current.publicKeyBase64;
    const ownNext = rotation.nextPublicKey;
    const keepalive = Math.round(parseDuration(this.ctx.settings['encryption.wireguard.persistentKeepalive']) / 1000);
    const pass = ++this.passes;
    const holder = (key: string): string | undefined => {
      if (key === own || key === ownNext) return this.ctx.node.name;
      const h = this.holders.get(key);
      return h?.pass === pass ? h.name : undefined;
    };
    const hold = (key: string, name: string): void => {
      const h = this.holders.get(key);
      if (h) { h.name = name; h.pass = pass; } else this.holders.set(key, { name, pass });
    };
    const problems = new Map<string, string>();
    const keyed: PeerNode[] = [];
    for (const p of peers) {
      const key = p.annotations[WG_PUBKEY_ANNOTATION];
      if (!key) continue; // its agent has not published a key yet: its prefixes stay fail-closed
      const other = holder(key);
      if (other !== undefined) {
        problems.set(`peer ${p.name}`, `detected duplicate public key. node "${p.name}" uses same key as existing node "${other}"`);
        continue;
      }
      if (!validKey(key)) {
        problems.set(`peer ${p.name}`, `node "${p.name}" publishes an invalid public key`);
        continue;
      }
      hold(key, p.name);
      keyed.push(p);
    }
    // Next keys (their nodes rotate): accepted when no one else holds them; we say so in wg-accepts.
    const accepts: string[] = [];
    const specs: WireGuardPeerSpec[] = [];
    const nexts: (string | undefined)[] = [];
    for (const p of keyed) {
      const next = p.annotations[WG_NEXT_PUBKEY_ANNOTATION];
      const ok = !!next && next !== p.annotations[WG_PUBKEY_ANNOTATION] && validKey(next) && holder(next) === undefined;
      if (ok) { hold(next, p.name); accepts.push(next); }
      nexts.push(ok ? next : undefined);
    }
    for (const [i, p] of keyed.entries()) {
      const next = nexts[i];
      const last = this.specs.get(p.name);
      if (last && this.specs.marked(last, pass)) continue; // a name twice: its first spec stands (the tunnel holds one spec a slot)
      if (last && last.peer === p && last.keepalive === keepalive && last.next === next) {
        this.specs.mark(last, pass);
        specs.push(last.spec);
        continue;
      }
      const spec: WireGuardPeerSpec = {
        name: p.name, publicKey: p.annotations[WG_PUBKEY_ANNOTATION]!, endpoint: { address: p.internalIP, port: p.external?.port ?? WG_PORT },
        allowedIPs: [...listOf(p.podCIDRs), ...listOf(p.internalIPs).map(hostPrefix)], persistentKeepalive: p.external?.persistentKeepalive || keepalive,
      };
      if (next) spec.nextPublicKey = next;
      this.specs.set(p.name, { peer: p, keepalive, next, spec, slot: -1 }, pass);
      specs.push(spec);
    }
    this.specs.forgetUnmarked(pass);
    forgetUnmarked(this.holders, pass);
    rotation.observe(keyed); // a peer node is a RotationPeer (name, annotations)
    // Node IPs keep the node IP as source (not veil_wg0's pod gateway address): node-to-node
    // traffic stays node-to-node inside the tunnel. A prefix twice: once, its last source wins.
    const routes: TunnelPrefix[] = [];
    const route = (prefix: string, src: string | undefined): void => {
      const r = this.routeOf.get(prefix);
      if (r?.pass === pass) {
        if (r.route.src !== src) routes[routes.indexOf(r.route)] = r.route = { prefix, src };
        return;
      }
      if (r && r.route.src === src) r.pass = pass;
      else this.routeOf.set(prefix, { route: { prefix, src }, pass });
      routes.push(this.routeOf.get(prefix)!.route);
    };
    // One closure of each a pass, not one a peer.
    const podRoute = (c: string) => route(c, undefined);
    const nodeRoute = (ip: string) => route(hostPrefix(ip), this.ctx.node.internalIPs.find((own) => own.includes(':') === ip.includes(':')));
    for (const p of peers) {
      eachOf(p.podCIDRs, podRoute);
      if (this.nodeEncryption) eachOf(p.internalIPs, nodeRoute);
    }
    forgetUnmarked(this.routeOf, pass);
    return {
      datapathPeers: specs, slotOf: this.slotOf, routes, probes: peers, problems, // the probes: the peers themselves (the prober skips external ones)
      publish: {
        annotations: { [WG_PUBKEY_ANNOTATION]: own, [WG_NEXT_PUBKEY_ANNOTATION]: ownNext ?? null, [WG_ACCEPTS_ANNOTATION]: accepts.sort().join(' ') || null },
        encryptionKey: WG_ENCRYPTION_KEY,
      },
    };
  }

  statusDetail(applied: DesiredState<'wireguard'> | undefined): string {
    if (!this.rotation) return '';
    const rotation = this.rotation.describe();
    return `[NodeEncryption: ${this.nodeEncryption ? 'Enabled' : 'Disabled'}, ${WG_DEVICE} (Pubkey: ${this.rotation.current.publicKeyBase64}, Port: ${WG_PORT}, Peers: ${applied?.datapathPeers.length ?? 0})${rotation ? `, ${rotation}` : ''}]`;
  }

  private engineStatus(tunnel: Tunnel<'wireguard'>): Promise<WireGuardEngineStatus> {
    return tunnel.request({ type: 'status' });
  }

  async encryptStatus(tunnel: Tunnel<'wireguard'>): Promise<WireGuardEncryptStatus> {
    const st = await this.engineStatus(tunnel);
    return {
      mode: ciliumModeName(this.type),
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
        ...(this.rotation ? { 'key-rotation': { ...this.rotation.status, retiringKey: st.retiringPublicKey } } : {}),
      },
      counters: st.counters,
      drops: st.drops,
      probes: tunnel.probes(),
    };
  }

  async modeMetrics(tunnel: Tunnel<'wireguard'>): Promise<ModeMetricsSnapshot> {
    return { mode: ciliumModeName(this.type), engine: await this.engineStatus(tunnel) };
  }

  stop(): void {
    this.rotation?.stop(); // the key pair stays on disk, the tunnel is the agent's
  }
}
