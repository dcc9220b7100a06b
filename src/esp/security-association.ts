// A security association: one direction of one tunnel under one key, as `ip xfrm state` shows it.
// Always ESN and a replay window of 1024 (Cilium's per-tunnel keys). Outbound SAs own their sequence
// reservation, inbound SAs their replay window.
import type { EspTransform } from './esp-transform.js';
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

function common(p: SaParams): SaCommon {
  return {
    spi: p.spi, src: p.src, dst: p.dst, transform: p.transform, icvLength: p.transform.icvLength, esn: true,
    replayWindowSize: REPLAY_WINDOW_SIZE, counters: { bytes: 0, packets: 0, addTimeMs: p.nowMs, useTimeMs: 0 },
  };
}

/** Counts one packet of `bytes` inner bytes through the SA (either direction). */
export function countSaUse(sa: SecurityAssociation, bytes: number, nowMs: number): void {
  sa.counters.bytes += bytes;
  sa.counters.packets++;
  sa.counters.useTimeMs = nowMs;
}

/** `sequence` carries the persisted mark for this key (new OutboundSequence(mark)); nothing is sendable until a block is persisted. */
export function createOutboundSa(p: SaParams & { sequence: OutboundSequence }): OutboundSa {
  return { ...common(p), direction: 'out', sequence: p.sequence };
}

/** `replayTop`: the replay mark persisted before an agent restart, if any (see replay-mark.ts): everything up to it counts as seen. */
export function createInboundSa(p: SaParams & { replayTop?: number }): InboundSa {
  const top = p.replayTop ?? 0;
  return {
    ...common(p), direction: 'in', replay: new EspReplayWindow(REPLAY_WINDOW_SIZE, top),
    replayMark: new ReplayMark(top, p.nowMs),
  };
}

/**
 * Inbound SAs by (outer source IP, SPI): every node uses the same SPI, so the SPI alone does not
 * pick the key; the sender's address does (Cilium does the same with node-id marks).
 */
export class InboundSaTable {
  readonly #bySource = new Map<string, Map<number, InboundSa>>();

  add(sa: InboundSa): void {
    let bySpi = this.#bySource.get(sa.src);
    if (!bySpi) this.#bySource.set(sa.src, (bySpi = new Map()));
    bySpi.set(sa.spi, sa);
  }

  remove(src: string, spi: number): boolean {
    const bySpi = this.#bySource.get(src);
    if (!bySpi?.delete(spi)) return false;
    if (bySpi.size === 0) this.#bySource.delete(src);
    return true;
  }

  /** The SAs from one source (a peer), without a walk over all of them. */
  ofSource(src: string): InboundSa[] {
    return [...(this.#bySource.get(src)?.values() ?? [])];
  }

  lookup(src: string, spi: number): InboundSa | undefined {
    return this.#bySource.get(src)?.get(spi);
  }

  all(): InboundSa[] {
    return [...this.#bySource.values()].flatMap((m) => [...m.values()]);
  }
}
