// IPsec mode of the agent: the key file from the secret (Cilium's grammar and rotation rules),
// and from the peers the per-tunnel SAs for every key in force. Rotation goes in the safe order:
// the pass that installs inbound SAs for the new key publishes its SPI only once applied, and a
// sender moves only when both ends published it (pairSpi).
import { join } from 'node:path';
import type { RegistryObject, Watch } from '../control/registry.js';
import { IpsecKeyLoader } from '../keys/ipsec-key-loader.js';
import { IPSEC_SECRET_DATA_KEY } from '../keys/ipsec-key-secret.js';
import type { IpsecKey } from '../keys/ipsec-keyfile.js';
import { deriveTunnelTransforms, derivedMaterialLength, derivedSaSpec } from '../keys/ipsec-derive.js';
import { pairSpi } from '../keys/ipsec-spi.js';
import { ipsecTunnelMtu } from '../keys/ipsec-mtu.js';
import { readSequenceMarks } from '../esp/sequence-mark-file.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import type { EspEngineStatus, EspPeerSpec, EspSaSpec } from '../datapath/messages.js';
import { keyParts, type EspTransform, type PackedTransform } from '../esp/esp-transform.js';
import { KeyMaterialArena } from '../esp/key-material-arena.js';
import { VeilError, errorMessage } from '../util/errors.js';
import type { EncryptionMode, ModeContext } from './encryption-mode.js';
import type { PeerNode } from './node-source.js';
import { ciliumModeName, parseDuration } from './settings.js';
import type { DesiredState, Tunnel, TunnelParams } from './tunnel.js';
import { MarkedSlots } from '../util/marked-slots.js';
import { eachOf, type OneOrMore } from '../util/one-or-more.js';
import { KeptList } from '../util/kept-list.js';
import type { ModeMetricsSnapshot } from './metrics.js';
import type { IpsecEncryptStatus } from './api.js';

export const IPSEC_DEVICE = 'veil_ipsec0';

/** The retired keys' expiry timer waits at most this long before it looks again. */
const EXPIRY_RECHECK_MS = 60_000;

export class IpsecMode implements EncryptionMode<'esp'> {
  readonly type = 'ipsec' as const;
  readonly device = IPSEC_DEVICE;
  /** Its SA keys are derived from each peer's boot id (as Cilium's). */
  readonly readsBootIDs = true;
  private readonly loader = new IpsecKeyLoader();
  /**
   * Each peer's spec as the last pass made it, and from what: the same peer object (the node source
   * keeps it until the node changes), keys and published key id give the same spec object, which
   * the tunnel tells unchanged by identity (a pass over 5,000 peers builds and compares no spec).
   * Its SA keys are derived again only for a peer that is new, rebooted (a new boot id) or under a
   * new key (two hashes per key each): a key the last spec had keeps its material where it is.
   * Kept by its peer's slot (PeerNode.slot), which the tunnel keeps what it applied by too
   * (DesiredState.slotOf): no map of the peers (a map by name was ~50 B a peer).
   */
  private specs = new MarkedSlots<KeptSpec>();
  /** The derived keys of every spec, packed in shared chunks (a buffer per peer was ~224 B for 40 bytes of keys). */
  private readonly keyMaterial = new KeyMaterialArena();
  /** The keys in force and published key id the last pass made specs under: one record its specs share. */
  private under?: MadeUnder;
  /** The specs and routes of the last pass, handed back while a pass makes the same (kept-list.ts). */
  private readonly specList = new KeptList<EspPeerSpec>();
  private readonly routeList = new KeptList<string>();
  private passes = 0;
  private secretWatch?: Watch;
  private expiryTimer?: NodeJS.Timeout;
  private rotationMs = 0;
  private stopped = false;

  constructor(private readonly ctx: ModeContext) {}

  private get secretName(): string {
    return this.ctx.settings['encryption.ipsec.secretName'];
  }

  private get keyFileName(): string {
    return `secret:${this.secretName}/${IPSEC_SECRET_DATA_KEY}`;
  }

  /** The key file text; `committed` is the secret as a watch event delivered it (fresher than a read). */
  private async readKeyFile(committed?: RegistryObject | null): Promise<string> {
    const s = committed === null ? undefined : committed ?? await this.ctx.secrets.get(this.secretName);
    const raw = s?.data?.[IPSEC_SECRET_DATA_KEY];
    if (raw === undefined) {
      throw new VeilError('NO_IPSEC_KEYS', `open ${this.keyFileName}: no such file or directory`,
        `create the secret: veil secret create ${this.secretName} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128"`);
    }
    return Buffer.from(raw, 'base64').toString('utf8');
  }

  async prepare(): Promise<TunnelParams<'esp'>> {
    const c = this.ctx;
    const loaded = this.loader.load(await this.readKeyFile(), Date.now());
    if (!loaded.ok) throw new VeilError(loaded.error.code, `failed to load IPsec keyfile ${this.keyFileName}: ${loaded.error.message}`, loaded.error.hint);
    const key = loaded.value.current;
    c.health.ok('ipsec-keys', `Watching keyfiles (key id ${key.spi})`);
    const marksFile = join(c.stateDir, 'esp-sequence-marks.json');
    const marks = await readSequenceMarks(marksFile);
    if (c.settings['encryption.ipsec.keyWatcher']) {
      this.secretWatch = await c.secrets.watch(this.secretName, (secret) => { void this.reloadKeys(secret ?? null); });
    }
    this.rotationMs = parseDuration(c.settings['encryption.ipsec.keyRotationDuration']);
    this.armExpiry();
    return {
      device: IPSEC_DEVICE, mtu: ipsecTunnelMtu(c.node.underlayMtu, key).mtu, port: ESP_IN_UDP_PORT,
      rawEsp: c.settings['encryption.ipsec.encapsulation'] === 'esp',
      engine: { kind: 'esp', localIp: c.node.internalIPs[0]!, marksFile, marks: Object.fromEntries(marks) },
    };
  }

  /**
   * A rotation is over: no old key may stay readable in the registry's history (etcd keeps every
   * earlier value of the secret until compaction). Every agent asks; the first does it.
   */
  private async forgetRetiredKeys(spis: number[]): Promise<void> {
    const c = this.ctx;
    if (!c.secrets.forgetEarlierValues) return;
    try {
      c.log.info('old IPsec keys removed from the registry history', { spis, how: await c.secrets.forgetEarlierValues(this.secretName) });
    } catch (e) {
      c.log.warn('could not remove old IPsec keys from the registry history', { spis, error: errorMessage(e) });
    }
  }

  /** The key file changed: load it, or keep the key in force and say why not. */
  private async reloadKeys(committed: RegistryObject | null): Promise<void> {
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
    this.armExpiry();
    c.requestReconcile();
  }

  /**
   * Retired keys expire on their own clock, not only when the cluster changes: a timer at the
   * first one's expiry, armed only while a key is retired (a 1-s interval woke an idle agent for
   * nothing between rotations). Read again when it fires (the wall clock may have moved), and at
   * least every EXPIRY_RECHECK_MS (a node timer cannot wait past ~24.8 days).
   */
  private armExpiry(): void {
    if (this.expiryTimer || this.stopped) return;
    let first: number | undefined;
    for (const r of this.loader.retired()) if (first === undefined || r.sinceMs < first) first = r.sinceMs;
    if (first === undefined) return;
    const c = this.ctx;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      const expired = this.loader.expire(Date.now(), this.rotationMs);
      this.armExpiry();
      if (!expired.length) return;
      c.log.info('removing SAs of retired IPsec keys', { spis: expired.map((k) => k.spi) });
      c.requestReconcile();
      void this.forgetRetiredKeys(expired.map((k) => k.spi));
    }, Math.min(EXPIRY_RECHECK_MS, Math.max(0, first + this.rotationMs - Date.now()) + 1));
  }

  private keysInForce(): IpsecKey[] {
    const cur = this.loader.current!;
    return [cur, ...this.loader.retired().map((r) => r.key).filter((k) => k.spi !== cur.spi)];
  }

  desired(peers: PeerNode[], publishedKey: number | undefined): DesiredState<'esp'> {
    const keys = this.keysInForce();
    const current = this.loader.current!;
    const localSpi = publishedKey || current.spi;
    const u = this.under;
    const under = (this.under = u && u.localSpi === localSpi && sameKeys(u.keys, keys) ? u : { keys, localSpi });
    const local = { ip: this.ctx.node.internalIPs[0]!, bootId: this.ctx.node.bootID };
    const specs = this.specList;
    specs.start();
    const problems = new Map<string, string>();
    const pass = ++this.passes;
    const table = this.specs;
    for (let i = 0; i < peers.length; i++) { // indexed: an iterator's results were garbage at every peer
      const p = peers[i]!;
      if (!p.bootID) continue; // no boot id published yet: no SA, its pods stay fail-closed
      if (table.marked(p.slot, pass)) continue; // a peer twice: its first spec stands (the tunnel holds one spec a slot)
      const last = table.at(p.slot); // a slot given to another peer since: its spec's peer is not this one
      if (last && last.peer === p && (last.under === under || (last.under.localSpi === localSpi && sameKeys(last.under.keys, keys)))) {
        specs.add(last);
        table.mark(p.slot, pass);
        continue;
      }
      if (p.external && !p.encryptionKey) {
        problems.set(`peer ${p.name}`, `peer ${p.name} has no IPsec configuration yet: run 'veil ipsec peer-config ${p.name}' and apply it there`);
        continue;
      }
      const spec = this.makeSpec(p, last, keys, under, local);
      if (typeof spec === 'string') {
        problems.set(`peer ${p.name}`, spec);
        continue;
      }
      specs.add(spec);
      table.set(p.slot, spec, pass);
    }
    // Peers gone are forgotten (and keys retired, with their specs): a walk of every spec only when one is.
    table.forgetUnmarked(pass);
    // The routes are the pod CIDRs' own strings (a prefix twice is routed once by the tunnel): no object per route.
    const routes = this.routeList;
    routes.start();
    const addRoute = (c: string) => routes.add(c); // one closure a pass, not one a peer
    for (let i = 0; i < peers.length; i++) eachOf(peers[i]!.podCIDRs, addRoute);
    return {
      // The probes are the peers themselves (the prober skips external ones).
      datapathPeers: specs.end(), slotOf: specSlot, messageOf: specMessage, routes: routes.end(), probes: peers, problems,
      // Applied, this pass installed inbound SAs for every key in force: the current SPI may be published.
      publish: { annotations: {}, encryptionKey: current.spi },
    };
  }

  /**
   * A new or changed peer's spec, or why it has none. Its own method: a closure in the loop over
   * every peer made that loop's body allocate a context at each peer, ~0.2 MB a pass at 5,000.
   */
  private makeSpec(p: PeerNode, last: KeptSpec | undefined, keys: IpsecKey[], under: MadeUnder, local: { ip: string; bootId: string }): KeptSpec | string {
    let spec: KeptSpec;
    try {
      const same = last && last.peer.internalIP === p.internalIP && last.peer.bootID === p.bootID ? last : undefined;
      const remote = { ip: p.internalIP, bootId: p.bootID! }; // the caller passes only peers with a boot id
      const derived: EspTransform[] = [];
      // A key the last spec had keeps its key material (the same place: the same bytes, append only).
      const kept = keys.map((k) => {
        const j = same ? same.under.keys.indexOf(k) : -1;
        if (j >= 0) return same!.placeOf(j);
        const t = deriveTunnelTransforms(k, local, remote);
        derived.push(t.out, t.in);
        return undefined;
      });
      const packed = packKeyMaterial(this.keyMaterial, derived);
      let next = 0;
      // Each new key's out and in transforms were packed one after the other: the place of the first is the key's.
      const places = kept.map((place) => {
        if (place) return place;
        const out = packed[next]!;
        next += 2;
        return out;
      });
      spec = places.length === 1
        ? new KeptSpec(p, under, places[0]!.material, places[0]!.at)
        : new KeptSpec(p, under, places.map((t) => ({ material: t.material, at: t.at })), 0);
    } catch (e) {
      return `cannot derive IPsec keys for ${p.name}: ${errorMessage(e)}`;
    }
    const spi = pairSpi(under.localSpi, p.encryptionKey ?? 0);
    spec.activeSpi = keys.some((k) => k.spi === spi) ? spi : 0;
    return spec;
  }

  statusDetail(): string {
    return '';
  }

  /**
   * peer: that peer's SAs only. The datapath keeps no peer names (a string a peer): it is asked and
   * answers by tunnel IP, and the peers are named here from the specs.
   */
  async engineStatus(tunnel: Tunnel<'esp'>, showKeys = false, peer?: string): Promise<EspEngineStatus> {
    const named = peer === undefined ? undefined : this.specNamed(peer);
    const ip = peer === undefined ? undefined : named?.ip ?? peer;
    const st = await tunnel.request({ type: 'status', showKeys, ...(ip === undefined ? {} : { peer: ip }) });
    const names = new Map<string, string>();
    if (peer === undefined) this.specs.forEach((s) => names.set(s.ip, s.name));
    else if (named) names.set(named.ip, named.name);
    return namePeers(st, names);
  }

  /** The spec of the peer named so (a status asks for one: a walk, the specs are kept by slot). */
  private specNamed(name: string): KeptSpec | undefined {
    let found: KeptSpec | undefined;
    this.specs.forEach((s) => { if (found === undefined && s.name === name) found = s; });
    return found;
  }

  async encryptStatus(tunnel: Tunnel<'esp'>, publishedKey = 0): Promise<IpsecEncryptStatus> {
    const st = await this.engineStatus(tunnel);
    const maxSeq = st.sas.filter((s) => s.direction === 'out').reduce((m, s) => Math.max(m, s.sequence), 0);
    const errors = Object.values(st.xfrmErrors).reduce((a, b) => a + b, 0);
    return {
      mode: ciliumModeName(this.type),
      ipsec: {
        'decrypt-interfaces': [IPSEC_DEVICE],
        'keys-in-use': st.sas.length,
        'max-seq-number': st.sas.length ? `0x${maxSeq.toString(16)}/0xffffffffffffffff` : 'N/A',
        'error-count': errors,
        'xfrm-errors': st.xfrmErrors,
      },
      keyId: this.loader.current?.spi,
      publishedSpi: publishedKey,
      retiredKeys: this.loader.retired().map((r) => ({ spi: r.key.spi, since: new Date(r.sinceMs).toISOString() })),
      sas: st.sas,
      drops: st.drops,
      counters: st.counters,
      probes: tunnel.probes(),
    };
  }

  async modeMetrics(tunnel: Tunnel<'esp'>, publishedKey = 0): Promise<ModeMetricsSnapshot> {
    return {
      mode: ciliumModeName(this.type), engine: await this.engineStatus(tunnel),
      loadedKeyId: this.loader.current?.spi ?? 0, publishedSpi: publishedKey, rotationInProgress: this.loader.retired().length > 0,
    };
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.expiryTimer);
    this.secretWatch?.stop();
  }
}

/** A kept spec's slot (DesiredState.slotOf): its peer's, which the mode's table keeps it by. */
const specSlot = (s: EspPeerSpec): number => (s as KeptSpec).peer.slot;

/** A kept spec's message to the datapath worker (one function, not a closure a pass). */
const specMessage = (s: EspPeerSpec): EspPeerSpec => (s as KeptSpec).message();

/** The keys in force (current first) and the published key id a spec was made under. */
interface MadeUnder { keys: IpsecKey[]; localSpi: number }

/** Where a key's material for one peer sits: its out transform's at `at` of `material`, its in transform's right after. */
interface KeyPlace { material: Uint8Array; at: number }

/**
 * A peer's spec as the last pass made it, and from what: the same peer object, keys and published
 * key id give the same spec. It keeps what its message cannot be made without: the peer (its tunnel
 * IP and pod CIDRs are the peer's), the keys it was made under, and where each key's material
 * sits; its SA specs are made from these when read, and its message (message()) when it is sent
 * (the tunnel's DesiredState.messageOf): an SA spec object per direction kept per peer, and the
 * IP and prefixes besides, were ~160 B a peer. What a pass reads of an unchanged peer (its peer,
 * under) are fields: no getter allocates on a pass. Its pass mark is the table's (a column).
 */
class KeptSpec implements EspPeerSpec {
  activeSpi = 0;
  readonly #peer: PeerNode;
  readonly #under: MadeUnder;
  /** Under one key its material's chunk (the place is #at); under more, each key's place, in the order of #under.keys. */
  readonly #material: Uint8Array | KeyPlace[];
  readonly #at: number;

  constructor(peer: PeerNode, under: MadeUnder, material: Uint8Array | KeyPlace[], at: number) {
    this.#peer = peer;
    this.#under = under;
    this.#material = material;
    this.#at = at;
  }

  get peer(): PeerNode { return this.#peer; }
  /** The peer's name, read from it: not a field (8 B a peer) and not sent (the datapath keeps no names). */
  get name(): string { return this.#peer.name; }
  get ip(): string { return this.#peer.internalIP; }
  /** The peer's allowed IPs are its pod CIDRs (the array is the peer object's, which nobody changes). */
  get allowedIPs(): OneOrMore<string> { return this.#peer.podCIDRs; }
  /** The keys and published key id it was made under (shared: a field each was 8 B a peer more). */
  get under(): MadeUnder { return this.#under; }

  /** Where key i's (of under.keys) material sits. */
  placeOf(i: number): KeyPlace {
    const m = this.#material;
    return m instanceof Uint8Array ? { material: m, at: this.#at } : m[i]!;
  }

  /** Its outbound SA specs (made when read: one per key, one itself under one key). */
  get outbound(): OneOrMore<EspSaSpec> { return this.sas(0); }
  get inbound(): OneOrMore<EspSaSpec> { return this.sas(1); }

  /** Direction 0 out, 1 in (right after out). Under one key no object but the SA spec itself: a table resent reads every spec's. */
  private sas(direction: 0 | 1): OneOrMore<EspSaSpec> {
    const keys = this.#under.keys, m = this.#material;
    if (m instanceof Uint8Array) return derivedSaSpec(keys[0]!, m, this.#at + direction * derivedMaterialLength(keys[0]!));
    return keys.map((k, i) => derivedSaSpec(k, m[i]!.material, m[i]!.at + direction * derivedMaterialLength(k)));
  }

  /** What the datapath worker is sent: a plain object (a structured clone carries own data properties only, not these getters). */
  message(): EspPeerSpec {
    return { ip: this.ip, allowedIPs: this.allowedIPs, outbound: this.outbound, activeSpi: this.activeSpi, inbound: this.inbound };
  }
}

/**
 * The key material of a peer's newly derived transforms packed in the arena's shared chunks, the
 * derived arrays wiped. Sent to the datapath worker, every typed array moves off the JS heap into a
 * buffer of its own (a backing store, its bookkeeping and a malloc'd block: ~0.2 KB each, four per
 * key), and each one here is ~96 B even as a view of a shared buffer: no array per key nor per peer.
 */
function packKeyMaterial(arena: KeyMaterialArena, derived: EspTransform[]): PackedTransform[] {
  const packed = arena.pack(derived);
  for (const t of derived) for (const part of keyParts(t)) part.fill(0);
  return packed;
}

/** The ESP engine's status with its peers named (it answers by tunnel IP): `names` by tunnel IP; a peer without one keeps its IP. */
export function namePeers(st: EspEngineStatus, names: ReadonlyMap<string, string>): EspEngineStatus {
  for (const sa of st.sas) sa.peer = names.get(sa.peer) ?? sa.peer;
  for (const p of st.peers) p.name = names.get(p.ip) ?? p.ip;
  return st;
}

/** The same keys in the same order (a loop: a closure per peer and pass is garbage at 5,000 peers). */
function sameKeys(a: IpsecKey[], b: IpsecKey[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
