// A security association: one direction of one tunnel under one key, as `ip xfrm state` shows it.
// Always ESN and a replay window of 1024 (Cilium's per-tunnel keys). Outbound SAs own their sequence
// reservation, inbound SAs their replay window.
import { AEAD_GCM, ENC_CBC_AES, type EspTransform } from './esp-transform.js';
import { EspReplayWindow, REPLAY_WINDOW_SIZE } from './replay-window.js';
import { OutboundSequence } from './sequence-store.js';
import { ReplayMark } from './replay-mark.js';

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
 * The SA's own copy of its transform: key material in arrays of its own on the JS heap (V8 keeps a
 * typed array of up to 64 bytes there) and the names as constants. A transform as a worker message
 * delivers it has each key and salt in an ArrayBuffer of its own outside the heap (a backing store,
 * its bookkeeping and a malloc'd block each: ~0.5 KB per SA) and its own copies of the names.
 */
function ownTransform(t: EspTransform): EspTransform {
  if (t.kind === 'aead') return { kind: 'aead', name: AEAD_GCM, key: new Uint8Array(t.key), salt: new Uint8Array(t.salt), icvLength: t.icvLength };
  return { kind: 'authenc', auth: t.auth === 'hmac(sha256)' ? 'hmac(sha256)' : 'hmac(sha512)', authKey: new Uint8Array(t.authKey), enc: ENC_CBC_AES, encKey: new Uint8Array(t.encKey), icvLength: t.icvLength };
}

/** Counts one packet of `bytes` inner bytes through the SA (either direction). */
export function countSaUse(sa: SecurityAssociation, bytes: number, nowMs: number): void {
  sa.counters.bytes += bytes;
  sa.counters.packets++;
  sa.counters.useTimeMs = nowMs;
}

// The SAs are object literals with every field in one order: thousands of them share one hidden
// class. Made by spreading a common part, every SA got a V8 map of its own (~350 B each).

/** `sequence` carries the persisted mark for this key (new OutboundSequence(mark)); nothing is sendable until a block is persisted. */
export function createOutboundSa(p: SaParams & { sequence: OutboundSequence }): OutboundSa {
  const transform = ownTransform(p.transform);
  return {
    spi: p.spi, src: p.src, dst: p.dst, transform, icvLength: transform.icvLength, esn: true, replayWindowSize: REPLAY_WINDOW_SIZE,
    counters: { bytes: 0, packets: 0, addTimeMs: p.nowMs, useTimeMs: 0 }, direction: 'out', sequence: p.sequence,
  };
}

/** `replayTop`: the replay mark persisted before an agent restart, if any (see replay-mark.ts): everything up to it counts as seen. */
export function createInboundSa(p: SaParams & { replayTop?: number }): InboundSa {
  const top = p.replayTop ?? 0;
  const transform = ownTransform(p.transform);
  return {
    spi: p.spi, src: p.src, dst: p.dst, transform, icvLength: transform.icvLength, esn: true, replayWindowSize: REPLAY_WINDOW_SIZE,
    counters: { bytes: 0, packets: 0, addTimeMs: p.nowMs, useTimeMs: 0 }, direction: 'in', replay: new EspReplayWindow(REPLAY_WINDOW_SIZE, top),
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
