// One registry watch on etcd: a gRPC watch stream on a key prefix that survives everything.
//
// - Resume: after a broken stream (member killed, restarted, network) it reopens on any endpoint
//   from the revision after the last one it delivered, and drops events at or below it, so nothing
//   is missed or replayed. (etcd never splits one revision over two responses.)
// - Compaction: if that revision is gone, it relists: ADDED/MODIFIED/DELETED for the difference
//   between the list and what this watch had delivered, then goes on from the list's revision.
// - Bad values: a key holding something that is not a valid object is skipped and reported.
// - Watchdog: no stream may stall silently (a member that keeps its TCP up but never answers, or a
//   stream call that never returns after a restart): an open must reach `created` within a deadline,
//   and a quiet stream is asked for progress, which must be answered within a deadline; otherwise
//   the stream is closed and reopened (with backoff, on whichever member etcd3 picks).
import type { IKeyValue, IWatchResponse, Etcd3 } from 'etcd3';
import { prefixRange } from './etcd3-lib.js';
import type { HeldVersions, Kind, RegistryObject, Watch, WatchEvent, WatchEventType } from '../registry.js';
import type { VeilError } from '../../util/errors.js';
import { decodeObject } from './object-codec.js';
import { parseObjectKey } from './keys.js';

export interface EtcdWatchDeps {
  client: Etcd3;
  cluster: string;
  /** The key prefix watched. */
  prefix: string;
  onEvent: (ev: WatchEvent) => void;
  /** reason: why the value at key is not an object (it is skipped); undefined: key is fine or gone. */
  report: (key: string, reason: string | undefined) => void;
  /** The stream broke or etcd refused it; the watch retries by itself. */
  onError: (e: unknown) => Promise<VeilError>;
  onStop: () => void;
  /** The watchdog's deadline (ms, default STALL_MS): see STALL_MS. */
  stallMs?: number;
  /** What the watcher holds of the one kind watched (Registry.watch): the watch keeps no versions of its own. */
  held?: { kind: Kind; versions: HeldVersions };
}

type Stream = Awaited<ReturnType<Etcd3['watchClient']['watch']>>;

/** The versions of what a watch delivered, by kind and name, as the watch reads them: its own record, or what the watcher holds. */
interface Seen {
  get(kind: Kind, name: string): number | undefined;
  entries(): IterableIterator<[Kind, string, number]>;
}

/**
 * The versions a watch has delivered, by kind and name, as its own record (it writes it as it
 * delivers). The name is the string its decoded object holds (and that the node source keeps as
 * the peer's name): keyed by the etcd key, every Node and Lease cost ~40 B more (a string of its own).
 */
class SeenVersions implements Seen {
  readonly #byKind = new Map<Kind, Map<string, number>>();

  get(kind: Kind, name: string): number | undefined {
    return this.#byKind.get(kind)?.get(name);
  }

  set(kind: Kind, name: string, version: number): void {
    let m = this.#byKind.get(kind);
    if (!m) this.#byKind.set(kind, m = new Map());
    m.set(name, version);
  }

  delete(kind: Kind, name: string): void {
    this.#byKind.get(kind)?.delete(name);
  }

  *entries(): IterableIterator<[Kind, string, number]> {
    for (const [kind, m] of this.#byKind) for (const [name, version] of m) yield [kind, name, version];
  }
}

/**
 * What the watcher holds, read as what the watch delivered: the watcher caches every event it is
 * given (and lists of its own, which are newer), so a relist's difference from it is what the
 * watcher needs to hear. The watch only reads it: the watcher writes it, from the events.
 */
class HeldSeen implements Seen {
  constructor(private readonly kind: Kind, private readonly held: HeldVersions) {}

  get(kind: Kind, name: string): number | undefined {
    return kind === this.kind ? this.held.version(name) : undefined;
  }

  *entries(): IterableIterator<[Kind, string, number]> {
    for (const name of [...this.held.names()]) { // a copy: the watcher's cache moves as events are delivered
      const version = this.held.version(name);
      if (version !== undefined) yield [this.kind, name, version];
    }
  }
}

const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;
/** The deadline of each try of open()'s unary call, and then for the stream's `created` response; how long a
 *  stream may be quiet before it is asked for progress (etcd answers at once with an empty
 *  response); how long that answer may take. */
const STALL_MS = 3000;

export class EtcdWatch implements Watch {
  /** The revision up to which every event has been delivered. */
  private last: number;
  /**
   * The version of what this watch has delivered, by key: the base a relist diffs against. Only
   * the version: the objects were ~1.2 KB per peer (its Node and its Lease), kept for nothing but the rare
   * deletion a relist finds (see gone()); a deletion the stream delivers carries the old object.
   */
  private seen: Seen;
  /** The watch's own record (seen is it), written as events are delivered; none when the watcher holds the versions. */
  private own?: SeenVersions;
  private stream: Stream | undefined;
  private stopped = false;
  private backoffMs = BACKOFF_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Fires when the current open or stream has been silent too long; see watchdog(). */
  private watchdogTimer: NodeJS.Timeout | undefined;
  /** Counts open() calls: an open that the watchdog gave up on must not install its stream late. */
  private attempt = 0;
  private readonly stallMs: number;
  /** Relists done (after compaction), for status and tests. */
  relists = 0;
  /** The etcd member (id, hex) whose stream delivered the last response. */
  memberId = '';

  constructor(private readonly d: EtcdWatchDeps, sinceRevision: number) {
    this.last = sinceRevision;
    this.stallMs = d.stallMs ?? STALL_MS;
    this.seen = d.held ? new HeldSeen(d.held.kind, d.held.versions) : (this.own = new SeenVersions());
    void this.begin(sinceRevision);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.abandon();
    this.d.onStop();
  }

  /** The revision every event up to which has been delivered. */
  get revision(): number {
    return this.last;
  }

  private async begin(since: number): Promise<void> {
    // What the caller had at `since` (it listed at that revision), so that a relist after a
    // compaction can also tell it what was deleted meanwhile (a caller that says what it holds: that).
    if (since > 0 && this.own) {
      try {
        const r = await this.d.client.kv.range({ ...this.range(), revision: since });
        for (const kv of r.kvs) this.remember(kv);
      } catch (e) {
        if (!isCompacted(e)) { this.retry(e, () => this.begin(since)); return; }
        // Already compacted: the relist below can report what exists, not what was deleted.
      }
    }
    this.open();
  }

  private range(): { key: Buffer; range_end: Buffer } {
    return prefixRange(this.d.prefix);
  }

  private remember(kv: IKeyValue): void {
    const dec = decodeObject(this.d.cluster, kv);
    if (dec.ok) this.own?.set(dec.object.kind, dec.object.metadata.name, dec.object.metadata.resourceVersion!);
  }

  /** A deleted object as far as this watch knows it without its value: kind, name, last version. */
  private gone(kind: Kind, name: string, version: number): RegistryObject {
    return { kind, metadata: { name, resourceVersion: version } };
  }

  private open(): void {
    if (this.stopped) return;
    const attempt = ++this.attempt;
    const current = () => attempt === this.attempt && !this.stopped;
    const fail = (e: unknown) => {
      if (!current()) return;
      this.abandon();
      this.retry(e, () => this.open());
    };
    // A unary call first: etcd3 re-authenticates unary calls whose token went stale (a restarted
    // member forgets its tokens) but not streams, and it tells a dead cluster from a refused watch.
    // Its deadline is the stall deadline, so a silent member fails it soon, which counts against
    // that member in etcd3's circuit breaker and moves the call on to another member (a getter:
    // etcd3 reads the options afresh for each member it tries, and each try gets the full time).
    const stallMs = this.stallMs;
    const probe = { get deadline() { return Date.now() + stallMs; } };
    // The probe can still hang before it reaches any member (seen after a restart with auth: no
    // answer and no error for over 10 s), so it too has a deadline: two tries' worth.
    this.watchdog(2 * stallMs, () => fail(new Error(`no etcd member answered within ${2 * stallMs} ms`)));
    this.d.client.kv.range({ ...this.range(), count_only: true }, probe).then(() => {
      if (!current()) throw new Error('abandoned');
      // From here to `created`, the stream call and the create may hang on a member that is up but
      // silent, which no error would ever report.
      this.watchdog(stallMs, () => fail(new Error(`no etcd watch stream was created within ${stallMs} ms`)));
      return this.d.client.watchClient.watch();
    }).then((stream) => {
      if (!current()) { try { stream.cancel(); } catch { /* already closed */ } return; }
      this.stream = stream;
      let created = false;
      stream.on('data', (res: IWatchResponse) => {
        if (this.stream !== stream) return;
        try {
          this.handle(res);
        } catch (e) {
          fail(e);
          return;
        }
        if (this.stream !== stream) return; // closed for a relist
        // Any answer after `created` shows the stream is alive: ask again after the next quiet spell.
        created ||= res.created;
        if (created) this.quiet(stream, fail);
      });
      stream.on('error', fail);
      stream.on('end', () => fail(new Error('the etcd watch stream ended')));
      stream.write({ create_request: { ...this.range(), start_revision: String(this.last + 1), prev_kv: true } });
    }, fail);
  }

  /** Arms the watchdog: run `expire` unless something re-arms or clears it within ms. */
  private watchdog(ms: number, expire: () => void): void {
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = setTimeout(expire, ms);
  }

  /** The stream answered: after stallMs of silence, ask for progress; no answer in time: reopen. */
  private quiet(stream: Stream, fail: (e: unknown) => void): void {
    this.watchdog(this.stallMs, () => {
      if (this.stream !== stream) return;
      try {
        stream.write({ progress_request: {} });
      } catch (e) {
        fail(e);
        return;
      }
      this.watchdog(this.stallMs, () => fail(new Error(`the etcd watch stream did not answer a progress request within ${this.stallMs} ms`)));
    });
  }

  private handle(res: IWatchResponse): void {
    this.memberId = BigInt(res.header.member_id).toString(16);
    if (res.canceled) {
      if (Number(res.compact_revision) > 0) { this.abandon(); void this.relist(); return; }
      // The attempt must still be current here: the thrown error reaches fail(), which closes the
      // stream and retries (an attempt abandoned first would make fail() ignore it: a silent watch).
      throw new Error(`etcd cancelled the watch: ${res.cancel_reason || 'no reason given'}`);
    }
    if (res.created) { this.backoffMs = BACKOFF_MIN_MS; return; }
    if (!res.events.length) return; // a progress notification
    let top = this.last;
    for (const ev of res.events) {
      const rev = Number(ev.kv.mod_revision);
      if (rev <= this.last) continue; // delivered before the stream broke
      if (rev > top) top = rev;
      if (ev.type === 'Delete') this.deleted(ev.kv, ev.prev_kv, rev);
      else this.put(ev.kv, rev);
    }
    this.last = top;
  }

  private put(kv: IKeyValue, rev: number): void {
    const dec = decodeObject(this.d.cluster, kv);
    this.d.report(dec.key, dec.ok ? undefined : dec.reason);
    if (!dec.ok) return; // the watcher keeps the last good version it saw, if any
    const { kind, metadata: { name } } = dec.object;
    const type: WatchEventType = this.seen.get(kind, name) !== undefined ? 'MODIFIED' : 'ADDED';
    this.own?.set(kind, name, rev);
    this.deliver({ type, revision: rev, object: dec.object });
  }

  private deleted(kv: IKeyValue, prev: IKeyValue | undefined, rev: number): void {
    const key = kv.key.toString();
    const where = parseObjectKey(this.d.cluster, key); // only an object's key was ever seen
    const had = where && this.seen.get(where.kind, where.name);
    this.d.report(key, undefined);
    const prevDec = prev ? decodeObject(this.d.cluster, prev) : undefined;
    const object = prevDec?.ok ? prevDec.object : had !== undefined ? this.gone(where!.kind, where!.name, had) : undefined;
    if (where) this.own?.delete(where.kind, where.name);
    if (object) this.deliver({ type: 'DELETED', revision: rev, object });
  }

  /** The revision we would resume from was compacted: list, tell the difference, go on. */
  private async relist(): Promise<void> {
    if (this.stopped) return;
    let res;
    try {
      res = await this.d.client.kv.range(this.range());
    } catch (e) {
      this.retry(e, () => this.relist());
      return;
    }
    if (this.stopped) return;
    this.relists++;
    const rev = Number(res.header.revision);
    const now = new SeenVersions();
    const events: WatchEvent[] = [];
    for (const kv of res.kvs) {
      const dec = decodeObject(this.d.cluster, kv);
      this.d.report(dec.key, dec.ok ? undefined : dec.reason);
      const where = dec.ok ? { kind: dec.object.kind, name: dec.object.metadata.name } : parseObjectKey(this.d.cluster, dec.key);
      const had = where && this.seen.get(where.kind, where.name);
      if (!dec.ok) {
        if (had !== undefined) now.set(where!.kind, where!.name, had); // keep the last good one
        continue;
      }
      const version = dec.object.metadata.resourceVersion!;
      now.set(where!.kind, where!.name, version);
      if (had === undefined) events.push({ type: 'ADDED', revision: version, object: dec.object });
      else if (had !== version) events.push({ type: 'MODIFIED', revision: version, object: dec.object });
    }
    for (const [kind, name, version] of this.seen.entries()) {
      if (now.get(kind, name) === undefined) events.push({ type: 'DELETED', revision: rev, object: this.gone(kind, name, version) });
    }
    events.sort((a, b) => a.revision - b.revision);
    if (this.own) this.seen = this.own = now;
    this.last = rev;
    for (const ev of events) this.deliver(ev);
    this.open();
  }

  private deliver(ev: WatchEvent): void {
    if (this.stopped) return;
    try {
      this.d.onEvent(ev);
    } catch (e) {
      queueMicrotask(() => { throw e; }); // the handler's bug: surface it, keep our place
    }
  }

  private retry(e: unknown, again: () => void): void {
    if (this.stopped) return;
    void this.d.onError(e).catch(() => undefined);
    const wait = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.retryTimer = setTimeout(again, wait * (0.75 + Math.random() / 2));
  }

  /** Ends the current open or stream: its watchdog stops, and its late callbacks are ignored. */
  private abandon(): void {
    this.attempt++;
    clearTimeout(this.watchdogTimer);
    this.closeStream();
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    // Its listeners stay: they ignore a stream that is no longer this.stream (CANCELLED included).
    try { s.cancel(); } catch { /* already closed */ }
  }
}

export function isCompacted(e: unknown): boolean {
  return /compacted/.test((e as Error)?.message ?? '');
}
