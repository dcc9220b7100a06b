// A digest of an ESP datapath's table (peers, their SAs with their keys, the allowed IPs each one
// owns), made the same way from the agent's desired specs and from what the engine holds
// (table-digest.ts). The agent's periodic whole pass compares the two and sends the whole table
// only when they differ: at 5,000 peers the table by postMessage and its application cost ~150 ms
// of CPU a minute for a table that was, every time, already in place.
import { packedLength, type PackedTransform } from '../esp/esp-transform.js';
import type { OneOrMore } from '../util/one-or-more.js';
import type { EspPeerSpec, EspSaSpec } from './messages.js';
import { KeptSpecsDigest, specsDigest, TableDigest } from './table-digest.js';

/** An ESP table's entries: a peer, an SA, a prefix and its owner (table-digest.ts sums them). */
export class EspTableDigest extends TableDigest {
  /** A peer as the engine keeps it: its address and the SPI of its active outbound SA (0: none); not its name, which the engine does not keep. */
  peer(ip: string, activeSpi: number): void {
    this.text('p'); this.text(ip); this.num(activeSpi);
    this.end();
  }

  /** An SA ('o'ut to the peer at ip, 'i'n from it), its SPI and its transform with the key material. */
  sa(direction: 'o' | 'i', ip: string, spi: number, t: PackedTransform): void {
    this.text(direction); this.text(ip); this.num(spi);
    this.text(t.kind); this.num(t.icvLength);
    if (t.kind === 'aead') this.num(t.keyLength);
    else { this.text(t.auth); this.num(t.encKeyLength); this.num(t.authKeyLength); }
    const m = t.material;
    for (let i = t.at, end = t.at + packedLength(t); i < end; i++) this.num(m[i]!);
    this.end();
  }

  /** An allowed-IPs prefix owned by the peer at ip. */
  prefix(prefix: string, ip: string): void {
    this.text('a'); this.text(prefix); this.text(ip);
    this.end();
  }
}

/**
 * The digest of the table these specs make (what EspEngine.digest() answers once it holds exactly
 * them): an SPI named twice in a direction counts once, as the engine keeps it; an active SPI without its
 * SA counts as none; a prefix named twice by a peer counts once. Plain loops over the one-or-more
 * lists: the agent's whole pass makes it over every peer, where arrays and closures per spec were
 * ~2 MB of garbage at 5,000 peers.
 */
export function espSpecsDigest(specs: readonly EspPeerSpec[]): string {
  return specsDigest(specs, () => new EspTableDigest(), digestSpec);
}

/** espSpecsDigest of a set of specs kept up to date spec by spec (table-digest.ts KeptSpecsDigest). */
export class EspSpecsDigest extends KeptSpecsDigest<EspPeerSpec, EspTableDigest> {
  constructor() { super(() => new EspTableDigest(), digestSpec); }
}

/** A spec's entries, as the engine keeps them (see espSpecsDigest). */
function digestSpec(d: EspTableDigest, s: EspPeerSpec): void {
  d.peer(s.ip, hasSpi(s.outbound, s.activeSpi) ? s.activeSpi : 0);
  digestSas(d, 'o', s.ip, s.outbound);
  digestSas(d, 'i', s.ip, s.inbound);
  const a = s.allowedIPs;
  if (!Array.isArray(a)) return d.prefix(a, s.ip);
  for (let i = 0; i < a.length; i++) if (a.indexOf(a[i]!) === i) d.prefix(a[i]!, s.ip);
}

function hasSpi(sas: OneOrMore<EspSaSpec>, spi: number): boolean {
  if (!Array.isArray(sas)) return sas.spi === spi;
  for (let i = 0; i < sas.length; i++) if (sas[i]!.spi === spi) return true;
  return false;
}

/** A direction's SAs, each SPI once (its first SA). */
function digestSas(d: EspTableDigest, direction: 'o' | 'i', ip: string, sas: OneOrMore<EspSaSpec>): void {
  if (!Array.isArray(sas)) return d.sa(direction, ip, sas.spi, sas);
  for (let i = 0; i < sas.length; i++) {
    let first = true;
    for (let j = 0; j < i && first; j++) first = sas[j]!.spi !== sas[i]!.spi;
    if (first) d.sa(direction, ip, sas[i]!.spi, sas[i]!);
  }
}
