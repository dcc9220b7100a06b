// A security association: one direction of one tunnel under one key, as `ip xfrm state` shows it.
// Always ESN and a replay window of 1024 (Cilium's per-tunnel keys). Outbound SAs own their sequence
// reservation, inbound SAs their replay window.
import {
  AEAD_GCM, AUTH_SHA256, AUTH_SHA512, ENC_CBC_AES, GCM_SALT_LENGTH, packedLength, packedMaterial, packTransforms, type AuthName, type CbcHmacTransform, type EspTransform, type GcmTransform,
  type PackedCbcHmacTransform, type PackedGcmTransform, type PackedTransform,
} from './esp-transform.js';
import { EspReplayWindow, REPLAY_WINDOW_SIZE, type EspReplayWindowState } from './replay-window.js';
import { OutboundSequence } from './sequence-store.js';
import { ReplayMark } from './replay-mark.js';
import { ByteSlabs, Slab, slotOffset } from '../util/slab.js';

/** An SA's counters, in the SA itself (an object of their own was ~56 B an SA). */
export interface SaCounters {
  /** Inner (plaintext) bytes and packets through this SA. */
  bytes: number;
  packets: number;
  readonly addTimeMs: number;
  /** Last packet, 0 = never used. */
  useTimeMs: number;
}

/**
 * What the SAs made together (an engine's update) share, one object for all of them: when they were
 * made (Unix ms: no small integer, so a number field of each SA was a 16 B box of its own), the
 * local end's address (an SA's source or destination: 8 B an SA) and the slabs their key material
 * and replay windows live in (8 B an inbound SA).
 */
export class SaOrigin {
  /** `slabs`: the engine's; a slab of its own for SAs made without (a test's). */
  constructor(readonly ms: number, readonly local: string, readonly slabs = new SaSlabs()) {}
}

/**
 * An SA's transform as fields of the SA itself (`transform` is the SA: an object of its own was a
 * header and a pointer more, 32 B an SA): its key material in `slot` of its origin's slabs (the
 * chunk is `material`: a field, since the per-packet paths read it; read from the slab it cost the
 * framing of a packet ~10 ns), and the kind and lengths in one small integer (`form`, keyForm()). A typed array per key and per salt cost ~96 B each, four per
 * peer, more than the bytes they hold. The per-packet paths read the salt in place (material,
 * saltAt); `key`, `salt`, `encKey` and `authKey` are views made on demand for the cold ones (a
 * native context's creation, node:crypto's single-packet path, status).
 */
export interface SaKeys {
  material: Uint8Array;
  /**
   * Its slot and its form in one small integer ((slot << FORM_BITS) | the form's number, formOf()): the
   * form is one of a few, and two fields were 8 B an SA more.
   */
  keyRef: number;
}

// form: bits 0-7 the key length (GCM) or the encryption key's (CBC), 8-15 the ICV length, 16-23 the
// authentication key's length, then the kind and the HMAC's hash.
const FORM_AUTHENC = 1 << 24;
const FORM_SHA512 = 1 << 25;

function keyForm(t: PackedTransform): number {
  if (t.kind === 'aead') return t.keyLength | (t.icvLength << 8);
  return t.encKeyLength | (t.icvLength << 8) | (t.authKeyLength << 16) | FORM_AUTHENC | (t.auth === AUTH_SHA512 ? FORM_SHA512 : 0);
}

/**
 * The forms in use, numbered in the order they first came (a process sees a handful: the key
 * lengths and ICVs of the GCM and CBC+HMAC transforms). At most FORMS of them; a slot then stays a
 * small integer below 2^31 / FORMS (~33 M SAs).
 */
const FORMS = 64;
const FORM_BITS = 6;
const forms: number[] = [];

/** The number of a form (keyForm()): its place in `forms`, added there when new. */
function formNumber(form: number): number {
  let i = forms.indexOf(form);
  if (i < 0) {
    if (forms.length === FORMS) throw new RangeError(`more than ${FORMS} ESP key forms`);
    i = forms.push(form) - 1;
  }
  return i;
}

/** The form (keyForm()) of a keyRef. */
function formOf(keyRef: number): number {
  return forms[keyRef & (FORMS - 1)]!;
}

/** The transform an SA is: its key fields read as a GcmTransform or a CbcHmacTransform, by `kind`. */
export interface SaGcmTransform extends GcmTransform, Omit<PackedGcmTransform, 'name'>, SaKeys {
  readonly origin: SaOrigin;
  readonly saltAt: number;
  /** Bytes of key material (key and salt). */
  readonly length: number;
}
export interface SaCbcHmacTransform extends CbcHmacTransform, Omit<PackedCbcHmacTransform, 'enc'>, SaKeys {
  readonly origin: SaOrigin;
  readonly length: number;
}
export type SaTransform = SaGcmTransform | SaCbcHmacTransform;

/**
 * What both SA classes read alike from their fields, on both prototypes (keyedSa()): one definition
 * for the two directions, not a field of each SA. The transform's getters read its key fields
 * (SaKeys); the times read its origin.
 */
abstract class SaGetters implements SaKeys {
  declare readonly material: Uint8Array;
  declare readonly keyRef: number;
  declare readonly origin: SaOrigin;
  /** Its last packet: ms after its origin's time, plus 1 (0 = never). A small integer for 24 days: Unix ms in a field was a 16 B box of its own. */
  declare lastUse: number;

  get addTimeMs(): number { return this.origin.ms; }
  /** Its last packet, Unix ms (0 = never used). */
  get useTimeMs(): number { return this.lastUse === 0 ? 0 : this.origin.ms + this.lastUse - 1; }
  set useTimeMs(ms: number) { this.lastUse = ms - this.origin.ms + 1; }

  /** Its key material's slot in its origin's slabs (SaKeys.keyRef). */
  get slot(): number { return this.keyRef >> FORM_BITS; }
  /** Kind and lengths: keyForm(). */
  get form(): number { return formOf(this.keyRef); }

  /** The SA's transform: the SA itself. */
  get transform(): SaTransform { return this as unknown as SaTransform; }
  get kind(): 'aead' | 'authenc' { return (this.form & FORM_AUTHENC) === 0 ? 'aead' : 'authenc'; }
  get name(): typeof AEAD_GCM { return AEAD_GCM; }
  get enc(): typeof ENC_CBC_AES { return ENC_CBC_AES; }
  get auth(): AuthName { return (this.form & FORM_SHA512) === 0 ? AUTH_SHA256 : AUTH_SHA512; }
  get keyLength(): number { return this.form & 0xff; }
  get encKeyLength(): number { return this.form & 0xff; }
  get authKeyLength(): number { return (this.form >> 16) & 0xff; }
  get icvLength(): 12 | 16 | 32 { return ((this.form >> 8) & 0xff) as 12 | 16 | 32; }
  /** Bytes of key material. */
  get length(): number {
    const f = this.form;
    return (f & 0xff) + ((f & FORM_AUTHENC) === 0 ? GCM_SALT_LENGTH : (f >> 16) & 0xff);
  }
  /** Where its key material starts in `material`: its slot's place in the chunk. */
  get at(): number { return slotOffset(this.slot, this.length); }
  get saltAt(): number { return this.at + (this.form & 0xff); }
  get key(): Uint8Array { return this.material.subarray(this.at, this.at + (this.form & 0xff)); }
  get salt(): Uint8Array { return this.material.subarray(this.saltAt, this.saltAt + GCM_SALT_LENGTH); }
  get encKey(): Uint8Array { return this.material.subarray(this.at, this.at + (this.form & 0xff)); }
  get authKey(): Uint8Array { return this.material.subarray(this.at + (this.form & 0xff), this.at + this.length); }
}

/** The getters SaGetters defines, as an SA class has them. */
type SaGettersApi = Omit<SaGetters, 'material' | 'keyRef' | 'origin' | 'lastUse'>;

/** Puts SaGetters' getters on an SA class's prototype. */
function keyedSa(c: { prototype: object }): void {
  const getters = Object.getOwnPropertyDescriptors(SaGetters.prototype);
  for (const [name, d] of Object.entries(getters)) if (name !== 'constructor') Object.defineProperty(c.prototype, name, d);
}

// The SAs are classes: what every SA has alike (its direction, ESN, the window size) is on the
// prototype, not a field of each (8 B each).

/**
 * One outbound SA: its counters, its keys (SaKeys: the SA is its transform) and its sequence
 * reservation (sequence-store.ts), which it is (`sequence` is the SA itself: an object of its own
 * was a header and a pointer more, 32 B an SA). `sequence`: the reservation to start from (its
 * state is taken over; do not use it afterwards). `keys`: taken as they are (saKeys(); another SA).
 */
export class OutboundSa extends OutboundSequence implements SaCounters, SaKeys {
  bytes = 0;
  packets = 0;
  lastUse = 0;
  readonly material: Uint8Array;
  readonly keyRef: number;

  /** `keys`: a slot of origin's slabs (saKeys(); another SA's of the same slabs). */
  constructor(readonly spi: number, readonly dst: string, keys: SaKeys, sequence: OutboundSequence, readonly origin: SaOrigin) {
    super(0, sequence.blockSize);
    this.takeOver(sequence);
    this.material = keys.material;
    this.keyRef = keys.keyRef;
  }

  /** The local end (SaOrigin: shared with the SAs made along with it). */
  get src(): string { return this.origin.local; }

  /** Its sequence reservation: the SA itself. */
  get sequence(): OutboundSequence { return this; }

  get direction(): 'out' { return 'out'; }
  get esn(): true { return true; }
  get replayWindowSize(): number { return REPLAY_WINDOW_SIZE; }
}
export interface OutboundSa extends SaGettersApi {}
keyedSa(OutboundSa);

/**
 * One inbound SA: its keys (SaKeys, as OutboundSa), its replay window and persisted replay mark
 * (replay-mark.ts), made at its first packet (`replay`, `replayMark`): until then everything up to
 * `replayTop` (the persisted mark) counts as seen, exactly what a window and mark made at once
 * would hold, without their objects and the window's 128 bytes of slab (~270 B an SA; most of a
 * large cluster's SAs carry no traffic at a given time). `replayTop` and `replayLive` read it
 * without making them. An SA idle for a while lets its window go again (idleWindow).
 */
export class InboundSa implements SaCounters, SaKeys {
  bytes = 0;
  packets = 0;
  lastUse = 0;
  /**
   * Its replay window once made, else the top to start one from: the persisted replay mark (0 =
   * none), or the top of the window idleWindow() let go. One field for the two (8 B an SA): the
   * top is needed only while there is no window, and the window's own top then.
   */
  #window: EspReplayWindow | number;
  #mark: ReplayMark | undefined;
  readonly material: Uint8Array;
  readonly keyRef: number;

  /** `origin`: when, the local end, the slabs (shared with the SAs made along with it). `keys`: as OutboundSa's. */
  constructor(readonly spi: number, readonly src: string, keys: SaKeys, readonly origin: SaOrigin, top: number) {
    this.#window = top;
    this.material = keys.material;
    this.keyRef = keys.keyRef;
  }

  get dst(): string { return this.origin.local; }
  get direction(): 'in' { return 'in'; }
  get esn(): true { return true; }
  get replayWindowSize(): number { return REPLAY_WINDOW_SIZE; }

  /** The replay window (made now if this is its first use: the packet path's). */
  get replay(): EspReplayWindow {
    const w = this.#window;
    return typeof w === 'number' ? this.makeWindow(w) : w;
  }

  /**
   * The persisted replay mark: no number above `replayMark.durable` is accepted before a higher
   * mark is durable (made with the window, or now on first use: the window's top is not the mark's).
   */
  get replayMark(): ReplayMark {
    return this.#mark ??= new ReplayMark(this.replayTop, this.addTimeMs); // no window yet: one made its mark (makeWindow)
  }

  /** The window's top, without making a window. */
  get replayTop(): number {
    const w = this.#window;
    return typeof w === 'number' ? w : w.top;
  }

  /** Its window exists (a packet came and it was not idle since, or it was handed over); its mark then does too. */
  get replayLive(): boolean {
    return typeof this.#window !== 'number';
  }

  /** Makes the window from `top`, or from the handed-over one when `saved` is valid and not below `top`. */
  private makeWindow(top: number, saved?: EspReplayWindowState): EspReplayWindow { // not a #method: that is a brand field in each SA (8 B)
    const windows = this.origin.slabs.windows, slot = windows.take();
    const storage = windows.array(slot), at = windows.offset(slot);
    const resumed = saved && EspReplayWindow.restore(saved, REPLAY_WINDOW_SIZE, storage, at);
    // The mark from the top before the window (a handed-over window's own top may be above what is durable).
    this.#mark ??= new ReplayMark(top, this.addTimeMs);
    return this.#window = resumed && resumed.top >= top ? resumed : new EspReplayWindow(REPLAY_WINDOW_SIZE, top, storage, at);
  }

  /** The window as plain numbers, for a datapath handover (without making one). */
  saveReplay(): EspReplayWindowState {
    const w = this.#window;
    return (typeof w === 'number' ? new EspReplayWindow(REPLAY_WINDOW_SIZE, w) : w).save();
  }

  /**
   * The SA carried no packet for a while (the engine's sweep): its window goes (its slot back to the
   * slabs, wiped) and everything up to its top counts as seen, as after a clean restart; the next
   * packet makes a window from that top. Stricter than the window (a number below the top not seen
   * yet is no longer accepted: one that late is long stale), never looser; the mark stays as it is.
   */
  idleWindow(): void {
    const w = this.#window;
    if (typeof w === 'number') return;
    this.#window = w.top;
    // Its slot from the window's words (Slab.slotOf), not a field of every SA (8 B): once a window.
    this.origin.slabs.windows.release(this.origin.slabs.windows.slotOf(w.storage));
  }

  /** A handed-over SA's exact window (numbers below its top not yet seen stay acceptable, once), made now. */
  resumeWindow(saved: EspReplayWindowState): void {
    const w = this.#window;
    if (typeof w === 'number') this.makeWindow(w, saved);
  }
}
export interface InboundSa extends SaGettersApi {}
keyedSa(InboundSa);

export type SecurityAssociation = OutboundSa | InboundSa;

export interface SaParams {
  spi: number;
  src: string;
  dst: string;
  /** Its keys: packed (as peer specs carry them) or plain; the SA keeps a copy. */
  transform: PackedTransform | EspTransform;
  /**
   * When it is made: Unix ms, or the origin of the SAs made along with it (SaOrigin: its local
   * address must be this SA's local end, src outbound, dst inbound; its slabs those given).
   */
  nowMs: SaOrigin | number;
}

/**
 * Where an engine's SAs keep their key material and replay windows: slots of shared slabs
 * (util/slab.ts), wiped and taken back when the SA retires (releaseSa). Each in an array of its
 * own, an SA's key, salt and window cost ~1.1 KB (typed arrays, ArrayBuffers, the window's
 * malloc'd backing store) for 148 bytes of data; as views into shared chunks still ~290 B.
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
 * The SA's own copy of a transform's keys: its key material in one slot of `slabs`, not the spec's
 * buffer (a worker message's, shared with the peer's other keys), and its names as the kind and
 * lengths (SaKeys.form).
 */
export function saKeys(t: PackedTransform | EspTransform, slabs: SaSlabs): SaKeys {
  const p = 'material' in t ? t : packTransforms([t])[0]!;
  const length = packedLength(p);
  const slab = slabs.keys.of(length), slot = slab.take();
  slab.array(slot).set(packedMaterial(p), slab.offset(slot));
  if (p !== t) p.material.fill(0); // the temporary packing of a plain transform
  return { material: slab.array(slot), keyRef: (slot << FORM_BITS) | formNumber(keyForm(p)) };
}

/** The origin of an SA made from `p` with its local end `local` (SaParams.nowMs). */
function originOf(p: SaParams, local: string, slabs: SaSlabs | undefined): SaOrigin {
  const o = p.nowMs;
  if (typeof o === 'number') return new SaOrigin(o, local, slabs ?? new SaSlabs());
  if (o.local !== local || (slabs !== undefined && o.slabs !== slabs)) throw new RangeError(`an SA made at ${local} with the origin of SAs at ${o.local}, or with other slabs`);
  return o;
}

/** The SA's transform holds exactly `t`'s keys (constant time over the key material, no copy: every whole pass compares every SA's). */
export function holdsTransform(sa: SaTransform, t: PackedTransform): boolean {
  if (sa.kind === 'aead' ? t.kind !== 'aead' || t.keyLength !== sa.keyLength : t.kind !== 'authenc' || t.auth !== sa.auth || t.encKeyLength !== sa.encKeyLength) return false;
  if (sa.icvLength !== t.icvLength || sa.length !== packedLength(t)) return false;
  const a = sa.material, b = t.material;
  let diff = 0; // no early exit: constant time over the key material
  for (let i = 0; i < sa.length; i++) diff |= a[sa.at + i]! ^ b[t.at + i]!;
  return diff === 0;
}

/**
 * The SA retires: its key material is wiped and its slots and window go back to its slabs (its
 * origin's). Call it once, when the last table drops the SA: its key material is zero (or another
 * SA's) afterwards.
 */
export function releaseSa(sa: SecurityAssociation): void {
  sa.origin.slabs.keys.of(sa.length).release(sa.slot);
  if (sa.direction === 'in') sa.idleWindow(); // its window's slot back too
}

/** Counts one packet of `bytes` inner bytes through the SA (either direction). */
export function countSaUse(sa: SecurityAssociation, bytes: number, nowMs: number): void {
  sa.bytes += bytes;
  sa.packets++;
  sa.useTimeMs = nowMs;
}

/**
 * `sequence` carries the persisted mark for this key (new OutboundSequence(mark)); nothing is
 * sendable until a block is persisted. `slabs`: where its key material lives (releaseSa gives it back).
 */
export function createOutboundSa(p: SaParams & { sequence: OutboundSequence }, slabs?: SaSlabs): OutboundSa {
  const origin = originOf(p, p.src, slabs);
  return new OutboundSa(p.spi, p.dst, saKeys(p.transform, origin.slabs), p.sequence, origin);
}

/**
 * `replayTop`: the replay mark persisted before an agent restart, if any (see replay-mark.ts):
 * everything up to it counts as seen. `window`: the exact window of a handed-over SA, taken when
 * valid and not below that top (numbers below its top not yet seen stay acceptable, once).
 * `slabs`: where its key material and window live (releaseSa gives them back).
 */
export function createInboundSa(p: SaParams & { replayTop?: number; window?: EspReplayWindowState }, slabs?: SaSlabs): InboundSa {
  const origin = originOf(p, p.dst, slabs);
  const sa = new InboundSa(p.spi, p.src, saKeys(p.transform, origin.slabs), origin, p.replayTop ?? 0);
  if (p.window) sa.resumeWindow(p.window);
  return sa;
}

/** Where one source's inbound SAs hang (InboundSaTable): the SA itself, an array of them during a rotation, or none. */
export interface InboundSlot {
  inbound: InboundSa | InboundSa[] | undefined;
}

/**
 * Inbound SAs by (outer source IP, SPI): every node uses the same SPI, so the SPI alone does not
 * pick the key; the sender's address does (Cilium does the same with node-id marks). A source has
 * one SA per key in force: the SA itself when one (an array of one was ~56 B a peer), an array of
 * them during a rotation (not a Map of its own: ~250 B each).
 * `slots`: each source's slot, by source. An engine gives its peers (a slot is a field of its peer
 * state: a map of its own was ~45 B a peer more); then an SA is added only for a source with a slot.
 * Without, the table keeps slots of its own, made and dropped as sources come and go.
 */
export class InboundSaTable<S extends InboundSlot = InboundSlot> {
  readonly #bySource: Map<string, S>;
  readonly #own: boolean;

  constructor(slots?: Map<string, S>) {
    this.#bySource = slots ?? new Map();
    this.#own = slots === undefined;
  }

  /** Adds the SA, or replaces the one with its source and SPI. */
  add(sa: InboundSa): void {
    let slot = this.#bySource.get(sa.src);
    if (!slot) {
      if (!this.#own) throw new RangeError(`no slot for the inbound SAs of ${sa.src}`);
      this.#bySource.set(sa.src, slot = { inbound: undefined } as S);
    }
    const had = slot.inbound;
    if (!had) { slot.inbound = sa; return; }
    if (!Array.isArray(had)) { slot.inbound = had.spi === sa.spi ? sa : [had, sa]; return; }
    const i = had.findIndex((x) => x.spi === sa.spi);
    if (i >= 0) had[i] = sa; else had.push(sa);
  }

  remove(src: string, spi: number): boolean {
    const slot = this.#bySource.get(src), had = slot?.inbound;
    if (!had) return false;
    if (!Array.isArray(had)) {
      if (had.spi !== spi) return false;
      if (this.#own) this.#bySource.delete(src); else slot!.inbound = undefined;
      return true;
    }
    const i = had.findIndex((x) => x.spi === spi);
    if (i < 0) return false;
    had.splice(i, 1);
    if (had.length === 1) slot!.inbound = had[0]!;
    return true;
  }

  /** The SAs from one source (a peer), without a walk over all of them. */
  ofSource(src: string): InboundSa[] {
    const had = this.#bySource.get(src)?.inbound;
    return !had ? [] : Array.isArray(had) ? [...had] : [had];
  }

  lookup(src: string, spi: number): InboundSa | undefined {
    const had = this.#bySource.get(src)?.inbound;
    if (!had) return undefined;
    if (!Array.isArray(had)) return had.spi === spi ? had : undefined;
    for (let i = 0; i < had.length; i++) if (had[i]!.spi === spi) return had[i]; // per packet run: no closure
    return undefined;
  }

  /** Every SA, without an array of them (a sweep). */
  forEach(fn: (sa: InboundSa) => void): void {
    this.#bySource.forEach((slot) => { const had = slot.inbound; if (Array.isArray(had)) had.forEach(fn); else if (had) fn(had); });
  }

  all(): InboundSa[] {
    const out: InboundSa[] = [];
    for (const { inbound: had } of this.#bySource.values()) if (Array.isArray(had)) out.push(...had); else if (had) out.push(had);
    return out;
  }
}
