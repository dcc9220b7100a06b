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
import { MarkedSlots } from '../util/marked-slots.js';
import { MarkedTable } from '../util/marked-table.js';
import { KeptList } from '../util/kept-list.js';
import { eachOf, type OneOrMore } from '../util/one-or-more.js';
import { routePrefix, routeSource } from './routes.js';
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

const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;
const ZERO_KEY = /^A{43}=$/;

/** Standard base64 of 32 bytes, not all zero. The patterns are made once (a literal here made two RegExp objects a call: every peer, every pass). */
function validKey(key: string): boolean {
  return BASE64_KEY.test(key) && !ZERO_KEY.test(key);
}

/**
 * A peer's allowed IPs: its pod CIDRs and its node IPs as host prefixes (given, else made), in an
 * array of exactly these (a spread of the two grew one of 17 slots: ~170 B a peer).
 */
function allowedIPsOf(podCIDRs: OneOrMore<string>, internalIPs: OneOrMore<string>, hostPrefixes: OneOrMore<string> | undefined): string[] {
  if (!Array.isArray(podCIDRs) && !Array.isArray(internalIPs)) return [podCIDRs, hostPrefixes === undefined ? hostPrefix(internalIPs) : hostPrefixes as string];
  const out: string[] = [];
  eachOf(podCIDRs, (c) => out.push(c));
  if (hostPrefixes === undefined) eachOf(internalIPs, (ip) => out.push(hostPrefix(ip)));
  else eachOf(hostPrefixes, (h) => out.push(h));
  return out.slice(); // exact size
}

/**
 * A peer's spec as the last pass made it, and from what: the same peer object, keepalive setting
 * and accepted next key give the same spec, which the tunnel tells unchanged by identity. It keeps
 * only what its message cannot be made without (the peer, the keepalive setting, the next key);
 * the message itself (message(), the tunnel's DesiredState.messageOf) is made when it is sent, as
 * IPsec's KeptSpec: the endpoint object, the allowed-IPs array and the node IP's host prefix kept
 * per peer were ~170 B a peer, for a message sent only when the peer changes.
 */
class KeptWgSpec implements WireGuardPeerSpec {
  readonly #peer: PeerNode;
  /** The mode's keepalive setting it was made under (an external peer's own one wins in persistentKeepalive). */
  readonly #keepalive: number;
  readonly #next: string | undefined;
  /** With node encryption, its node IPs' host prefixes, routed pass after pass by these strings (none made again each pass); else undefined. */
  readonly #hostPrefixes: OneOrMore<string> | undefined;

  constructor(p: PeerNode, keepalive: number, next: string | undefined, nodeEncryption: boolean) {
    this.#peer = p;
    this.#keepalive = keepalive;
    this.#next = next;
    this.#hostPrefixes = nodeEncryption ? (Array.isArray(p.internalIPs) ? p.internalIPs.map(hostPrefix) : hostPrefix(p.internalIPs as string)) : undefined;
  }

  get peer(): PeerNode { return this.#peer; }
  /** Its peer's slot (PeerNode.slot): the mode's table and the tunnel keep it by that. */
  get slot(): number { return this.#peer.slot; }
  get keepalive(): number { return this.#keepalive; }
  get hostPrefixes(): OneOrMore<string> | undefined { return this.#hostPrefixes; }
  get name(): string { return this.#peer.name; }
  get publicKey(): string { return this.#peer.annotations[WG_PUBKEY_ANNOTATION]!; }
  get nextPublicKey(): string | undefined { return this.#next; }
  get endpoint(): { address: string; port: number } { return { address: this.#peer.internalIP, port: this.#peer.external?.port ?? WG_PORT }; }
  get allowedIPs(): string[] { return allowedIPsOf(this.#peer.podCIDRs, this.#peer.internalIPs, this.#hostPrefixes); }
  get persistentKeepalive(): number { return this.#peer.external?.persistentKeepalive || this.#keepalive; }

  /** What the datapath worker is sent: a plain object (a structured clone carries own data properties only, not these getters); nextPublicKey absent without one. */
  message(): WireGuardPeerSpec {
    const m: WireGuardPeerSpec = { name: this.name, publicKey: this.publicKey, endpoint: this.endpoint, allowedIPs: this.allowedIPs, persistentKeepalive: this.persistentKeepalive };
    if (this.#next) m.nextPublicKey = this.#next;
    return m;
  }
}

/** A kept spec's message (one function, not a closure a pass). */
const specMessage = (s: WireGuardPeerSpec): WireGuardPeerSpec => (s as KeptWgSpec).message();

/** A route into the tunnel: the prefix itself without a source, else an object. */
function routeTo(prefix: string, src: string | undefined): TunnelPrefix {
  return src === undefined ? prefix : { prefix, src };
}

export class WireGuardMode implements EncryptionMode<'wireguard'> {
  readonly type = 'wireguard' as const;
  readonly device = WG_DEVICE;
  /** Its keys are the nodes' own, published: a peer's boot id is not read. */
  readonly readsBootIDs = false;
  /** The node's key pair and its rotation; unset until prepare() has loaded the key file (a start can fail before that). */
  private rotation?: WireGuardKeyRotation;
  /**
   * Kept and marked pass after pass (forget-unmarked.ts), as in the IPsec mode, so that a pass
   * allocates nothing per unchanged peer: each peer's spec and what it was made from (the same
   * spec object tells the tunnel it is unchanged), which peer holds each public key this pass
   * (current and next keys: a key two peers publish is refused to the later one), each prefix's route.
   * The specs are kept by their peers' slots (PeerNode.slot), which the tunnel keeps what it applied
   * by too (DesiredState.slotOf): no map of the peers (a map by name was ~50 B a peer).
   */
  private specs = new MarkedSlots<KeptWgSpec>();
  /** Each public key's holder's name (a record of name and pass per key was 40 B a peer: the name and mark are columns). */
  private holders = new MarkedTable<string, string>();
  /**
   * With node encryption, each prefix's route: a pod CIDR's is the prefix string itself (no
   * object), a node IP's the { prefix, src } object, kept while its source is the same (a record
   * and a route object per prefix were ~80 B). Without it, empty (routes()). The pass's list is
   * kept too: a pass that routes the same makes no array.
   */
  private routeOf = new MarkedTable<string, TunnelPrefix>();
  private readonly routeList = new KeptList<TunnelPrefix>();
  /** The peers with a usable key, as the last pass listed them (the rotation keeps the list it is given: never changed after). */
  private readonly keyedList = new KeptList<PeerNode>();
  /** The specs of the last pass, handed back while a pass makes the same (kept-list.ts). */
  private readonly specList = new KeptList<WireGuardPeerSpec>();
  private passes = 0;
  /** A spec's slot (DesiredState.slotOf): its peer's, which the table keeps it by. */
  private readonly slotOf = (s: WireGuardPeerSpec): number => (s as KeptWgSpec).slot;

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
    const holders = this.holders;
    const holder = (key: string): string | undefined => {
      if (key === own || key === ownNext) return this.ctx.node.name;
      const slot = holders.slotOf(key);
      return slot !== undefined && holders.markedAt(slot, pass) ? holders.at(slot) : undefined;
    };
    const hold = (key: string, name: string): void => void holders.set(key, name, pass);
    const problems = new Map<string, string>();
    const nodeEncryption = this.nodeEncryption;
    const keyedList = this.keyedList;
    keyedList.start();
    for (let i = 0; i < peers.length; i++) { // indexed, as every loop over the peers here: an iterator's results were garbage at every peer
      const p = peers[i]!;
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
      keyedList.add(p);
    }
    // Next keys (their nodes rotate): accepted when no one else holds them; we say so in wg-accepts.
    const accepts: string[] = [];
    const specs = this.specList;
    specs.start();
    const keyed = keyedList.end();
    // One loop: a peer's next key is decided before its spec, in the keyed order (every current key is held by now).
    for (let i = 0; i < keyed.length; i++) {
      const p = keyed[i]!, announced = p.annotations[WG_NEXT_PUBKEY_ANNOTATION];
      const ok = !!announced && announced !== p.annotations[WG_PUBKEY_ANNOTATION] && validKey(announced) && holder(announced) === undefined;
      if (ok) { hold(announced, p.name); accepts.push(announced); }
      const next = ok ? announced : undefined;
      if (this.specs.marked(p.slot, pass)) continue; // a peer twice: its first spec stands (the tunnel holds one spec a slot)
      const last = this.specs.at(p.slot); // a slot given to another peer since: its spec's peer is not this one
      if (last && last.peer === p && last.keepalive === keepalive && last.nextPublicKey === next && (last.hostPrefixes !== undefined) === nodeEncryption) {
        this.specs.mark(p.slot, pass);
        specs.add(last);
        continue;
      }
      const spec = new KeptWgSpec(p, keepalive, next, nodeEncryption);
      this.specs.set(p.slot, spec, pass);
      specs.add(spec);
    }
    this.specs.forgetUnmarked(pass);
    holders.forgetUnmarked(pass);
    rotation.observe(keyed); // a peer node is a RotationPeer (name, annotations)
    return {
      datapathPeers: specs.end(), slotOf: this.slotOf, messageOf: specMessage, routes: this.routes(peers, pass, nodeEncryption), probes: peers, problems, // the probes: the peers themselves (the prober skips external ones)
      publish: {
        annotations: { [WG_PUBKEY_ANNOTATION]: own, [WG_NEXT_PUBKEY_ANNOTATION]: ownNext ?? null, [WG_ACCEPTS_ANNOTATION]: accepts.sort().join(' ') || null },
        encryptionKey: WG_ENCRYPTION_KEY,
      },
    };
  }

  /**
   * The pass's routes. Without node encryption, as IPsec's: the pod CIDRs' own strings, a prefix
   * twice routed once by the tunnel (all without a source): no map of them (~45 B a peer).
   */
  private routes(peers: PeerNode[], pass: number, nodeEncryption: boolean): TunnelPrefix[] {
    const routeOf = this.routeOf, list = this.routeList;
    list.start();
    if (!nodeEncryption) {
      const podRoute = (c: string) => list.add(c); // one closure a pass, not one a peer
      for (let i = 0; i < peers.length; i++) eachOf(peers[i]!.podCIDRs, podRoute);
      routeOf.forgetUnmarked(pass); // empty unless node encryption was on
      return list.end();
    }
    // Node IPs keep the node IP as source (not veil_wg0's pod gateway address): node-to-node
    // traffic stays node-to-node inside the tunnel. A prefix twice: once, at its first place, its last source wins.
    let moved = false; // a prefix twice in this pass with another source: the list is made again at the end
    const route = (prefix: string, src: string | undefined): void => {
      const slot = routeOf.slotOf(prefix);
      if (slot !== undefined && routeOf.markedAt(slot, pass)) {
        if (routeSource(routeOf.at(slot)!) !== src) { routeOf.set(prefix, routeTo(prefix, src), pass); moved = true; }
        return;
      }
      let r = slot === undefined ? undefined : routeOf.at(slot)!;
      if (r !== undefined && routeSource(r) === src) routeOf.markAt(slot!, pass);
      else routeOf.set(prefix, r = routeTo(prefix, src), pass);
      list.add(r);
    };
    // One closure of each a pass, not one a peer.
    const podRoute = (c: string) => route(c, undefined);
    const ownIPs = this.ctx.node.internalIPs;
    const ownV4 = ownIPs.find((own) => !own.includes(':')), ownV6 = ownIPs.find((own) => own.includes(':')); // the source: the first own IP of the family
    const nodeRoute = (ip: string) => route(hostPrefix(ip), ip.includes(':') ? ownV6 : ownV4);
    const hostRoute = (h: string) => route(h, h.includes(':') ? ownV6 : ownV4);
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i]!;
      eachOf(p.podCIDRs, podRoute);
      // A peer's spec made from this peer object holds its node IPs' host prefixes: routed by
      // those strings (none made again each pass: a parse and a string a node IP), else made here.
      const spec = this.specs.at(p.slot);
      const hosts = spec?.peer === p ? spec.hostPrefixes : undefined;
      if (hosts === undefined) eachOf(p.internalIPs, nodeRoute);
      else eachOf(hosts, hostRoute);
    }
    routeOf.forgetUnmarked(pass);
    let routes = list.end();
    // Rare (a prefix two peers route, with two sources): each at its first place with its last source, in an array of its own (the kept one is never changed).
    if (moved) routes = routes.map((r) => routeOf.get(routePrefix(r))!);
    return routes;
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
      aeadContexts: st.aeadContexts,
    };
  }

  async modeMetrics(tunnel: Tunnel<'wireguard'>): Promise<ModeMetricsSnapshot> {
    return { mode: ciliumModeName(this.type), engine: await this.engineStatus(tunnel) };
  }

  stop(): void {
    this.rotation?.stop(); // the key pair stays on disk, the tunnel is the agent's
  }
}
