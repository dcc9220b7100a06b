// A security association: one direction of one tunnel under one key, as `ip xfrm state` shows it.
// Always ESN and a replay window of 1024 (Cilium's per-tunnel keys). Outbound SAs own their sequence
// reservation, inbound SAs their replay window.
import { AEAD_GCM, ENC_CBC_AES, type EspTransform } from './esp-transform.js';
import { EspReplayWindow, REPLAY_WINDOW_SIZE, type EspReplayWindowState } from './replay-window.js';
import { OutboundSequence } from './sequence-store.js';
import { ReplayMark } from './replay-mark.js';
import { ByteSlabs, Slab } from '../util/slab.js';

export interface SaCounters {
  /** Inner (plaintext) bytes and packets through this SA. */
  bytes: number;
  packets: number;
  addTimeMs: number;
  /** Last packet, 0 = never used. */
  useTimeMs: number;
}

interface SaCommon {
  spi: number;
  /** Outer (tunnel) addresses: src sends, dst receives. */
  src: string;
  dst: string;
  transform: EspTransform;
  icvLength: number;
  esn: true;
  replayWindowSize: number;
  counters: SaCounters;
}

export interface OutboundSa extends SaCommon {
  direction: 'out';
  sequence: OutboundSequence;
}

export interface InboundSa extends SaCommon {
  direction: 'in';
  replay: EspReplayWindow;
  /** The persisted replay mark: no number above `replayMark.durable` is accepted before a higher mark is durable. */
  replayMark: ReplayMark;
}

export type SecurityAssociation = OutboundSa | InboundSa;

export interface SaParams {
  spi: number;
  src: string;
  dst: string;
  transform: EspTransform;
  nowMs: number;
}

/**
 * Where an engine's SAs keep their key material and replay windows: slots of shared slabs
 * (util/slab.ts), wiped and taken back when the SA retires (releaseSa). Each in an array of its
 * own, an SA's key, salt and window cost ~1.1 KB (typed arrays, ArrayBuffers, the window's
 * malloc'd backing store) for 148 bytes of data.
 */
export class SaSlabs {
  readonly keys = new ByteSlabs();
  readonly windows = new Slab<Uint32Array>((n) => new Uint32Array(n), REPLAY_WINDOW_SIZE / 32);

  /** Slots held by SAs not yet released (key material and windows). */
  get inUse(): number {
    return this.keys.inUse + this.windows.inUse;
  }
}

/**
 * A copy of the transform: key material in slab slots (or, without slabs, arrays of its own) and
 * the names as constants. An SA keeps its own: a transform as a worker message delivers it has each
 * key and salt in an ArrayBuffer of its own outside the heap and its own copies of the names.
 */
export function copyTransform(t: EspTransform, slabs?: SaSlabs): EspTransform {
  const copy = (b: Uint8Array) => (slabs ? slabs.keys.copy(b) : new Uint8Array(b));
  if (t.kind === 'aead') return { kind: 'aead', name: AEAD_GCM, key: copy(t.key), salt: copy(t.salt), icvLength: t.icvLength };
  return { kind: 'authenc', auth: t.auth === 'hmac(sha256)' ? 'hmac(sha256)' : 'hmac(sha512)', authKey: copy(t.authKey), enc: ENC_CBC_AES, encKey: copy(t.encKey), icvLength: t.icvLength };
}

/**
 * The SA retires: its key material is wiped (and its slots and window go back to `slabs`, which
 * must be the slabs it was made with). Call it once, when the last table drops the SA: its key
 * arrays are zero (or another SA's) afterwards.
 */
export function releaseSa(sa: SecurityAssociation, slabs?: SaSlabs): void {
  const t = sa.transform;
  const keys = t.kind === 'aead' ? [t.key, t.salt] : [t.authKey, t.encKey];
  for (const k of keys) if (slabs) slabs.keys.release(k); else k.fill(0);
  if (sa.direction === 'in' && slabs) slabs.windows.release(sa.replay.storage);
}

/** Counts one packet of `bytes` inner bytes through the SA (either direction). */
export function countSaUse(sa: SecurityAssociation, bytes: number, nowMs: number): void {
  sa.counters.bytes += bytes;
  sa.counters.packets++;
  sa.counters.useTimeMs = nowMs;
}

// The SAs are object literals with every field in one order: thousands of them share one hidden
// class. Made by spreading a common part, every SA got a V8 map of its own (~350 B each).

/**
 * `sequence` carries the persisted mark for this key (new OutboundSequence(mark)); nothing is
 * sendable until a block is persisted. `slabs`: where its key material lives (releaseSa gives it back).
 */
export function createOutboundSa(p: SaParams & { sequence: OutboundSequence }, slabs?: SaSlabs): OutboundSa {
  const transform = copyTransform(p.transform, slabs);
  return {
    spi: p.spi, src: p.src, dst: p.dst, transform, icvLength: transform.icvLength, esn: true, replayWindowSize: REPLAY_WINDOW_SIZE,
    counters: { bytes: 0, packets: 0, addTimeMs: p.nowMs, useTimeMs: 0 }, direction: 'out', sequence: p.sequence,
  };
}

/**
 * `replayTop`: the replay mark persisted before an agent restart, if any (see replay-mark.ts):
 * everything up to it counts as seen. `window`: the exact window of a handed-over SA, taken when
 * valid and not below that top (numbers below its top not yet seen stay acceptable, once).
 * `slabs`: where its key material and window live (releaseSa gives them back).
 */
export function createInboundSa(p: SaParams & { replayTop?: number; window?: EspReplayWindowState }, slabs?: SaSlabs): InboundSa {
  const top = p.replayTop ?? 0;
  const transform = copyTransform(p.transform, slabs);
  const storage = slabs?.windows.take();
  const resumed = p.window && EspReplayWindow.restore(p.window, REPLAY_WINDOW_SIZE, storage);
  const replay = resumed && resumed.top >= top ? resumed : new EspReplayWindow(REPLAY_WINDOW_SIZE, top, storage);
  return {
    spi: p.spi, src: p.src, dst: p.dst, transform, icvLength: transform.icvLength, esn: true, replayWindowSize: REPLAY_WINDOW_SIZE,
    counters: { bytes: 0, packets: 0, addTimeMs: p.nowMs, useTimeMs: 0 }, direction: 'in', replay,
    replayMark: new ReplayMark(top, p.nowMs),
  };
}

/**
 * Inbound SAs by (outer source IP, SPI): every node uses the same SPI, so the SPI alone does not
 * pick the key; the sender's address does (Cilium does the same with node-id marks). A source has
 * one SA per key in force (one, two during a rotation): an array, not a Map of its own (~250 B each).
 */
export class InboundSaTable {
  readonly #bySource = new Map<string, InboundSa[]>();

  /** Adds the SA, or replaces the one with its source and SPI. */
  add(sa: InboundSa): void {
    const list = this.#bySource.get(sa.src);
    if (!list) { this.#bySource.set(sa.src, [sa]); return; }
    const i = list.findIndex((x) => x.spi === sa.spi);
    if (i >= 0) list[i] = sa; else list.push(sa);
  }

  remove(src: string, spi: number): boolean {
    const list = this.#bySource.get(src);
    const i = list ? list.findIndex((x) => x.spi === spi) : -1;
    if (i < 0) return false;
    if (list!.length === 1) this.#bySource.delete(src); else list!.splice(i, 1);
    return true;
  }

  /** The SAs from one source (a peer), without a walk over all of them. */
  ofSource(src: string): InboundSa[] {
    return [...(this.#bySource.get(src) ?? [])];
  }

  lookup(src: string, spi: number): InboundSa | undefined {
    const list = this.#bySource.get(src);
    if (!list) return undefined;
    for (let i = 0; i < list.length; i++) if (list[i]!.spi === spi) return list[i]; // per packet run: no closure
    return undefined;
  }

  all(): InboundSa[] {
    return [...this.#bySource.values()].flat();
  }
}
