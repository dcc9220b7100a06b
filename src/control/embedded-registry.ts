// The embedded registry: the cluster's state as plain files, safe for many processes (in different
// network namespaces, one filesystem) reading, writing and watching at once.
//
// Layout under `dir`:
//   objects/<Kind>/<name>.json  the current object; written to a temp file and renamed, never torn
//   events.log                  one JSON line per change {revision,type,object}: the commit point,
//                               and what watchers tail
//   lock                        the writers' lock: "<pid> <token>", made whole by link(2)
//
// A write takes the lock, finishes what a writer killed mid-way left half-done, appends its event
// (that commits it), writes the object file, compacts the log if it grew large, releases the lock.
import {
  closeSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync,
  renameSync, unlinkSync, watch as fsWatch, writeFileSync, writeSync, type FSWatcher,
} from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { writeFileAtomic, writeFileDurable } from '../util/durable-file.js';
import { VeilError } from '../util/errors.js';
import type { Kind, LeaseHandle, Registry, RegistryObject, Watch, WatchEvent, WatchEventType } from './registry.js';
import { KINDS, checkKind, checkName, checkObject, withCreation } from './object-checks.js';

export interface EmbeddedRegistryOptions {
  /** Compact the event log once it is larger than this (bytes). */
  compactBytes?: number;
  /** Events kept verbatim by a compaction (older ones shrink to the latest per object). */
  keepRecentEvents?: number;
  /** How often watchers poll the log besides fs.watch notifications (ms). */
  pollMs?: number;
  /** Give up taking the writers' lock after this long (ms). */
  lockTimeoutMs?: number;
}

const DEFAULTS: Required<EmbeddedRegistryOptions> = {
  compactBytes: 4 * 1024 * 1024,
  keepRecentEvents: 1000,
  pollMs: 200,
  lockTimeoutMs: 30_000,
};

/** Deletions remembered by compaction, so that a watcher far behind still learns of them. */
const MAX_TOMBSTONES = 10_000;


export class EmbeddedRegistry implements Registry {
  readonly dir: string;
  private readonly opts: Required<EmbeddedRegistryOptions>;
  private readonly logPath: string;
  private readonly lockPath: string;
  private readonly watches = new Set<LogWatch>();

  constructor(dir: string, opts: EmbeddedRegistryOptions = {}) {
    this.dir = dir;
    this.opts = { ...DEFAULTS, ...opts };
    this.logPath = join(dir, 'events.log');
    this.lockPath = join(dir, 'lock');
  }

  async get(kind: Kind, name: string): Promise<RegistryObject | undefined> {
    await this.commitsLanded();
    const o = this.readObject(kind, name);
    return o && !leaseExpired(o, Date.now()) ? o : undefined;
  }

  async list(kind: Kind): Promise<RegistryObject[]> {
    checkKind(kind);
    await this.commitsLanded();
    const out: RegistryObject[] = [];
    const now = Date.now();
    let files: string[];
    try { files = readdirSync(join(this.dir, 'objects', kind)).sort(); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out; // nothing written yet
      throw e;
    }
    for (const f of files) {
      if (f.startsWith('.') || !f.endsWith('.json')) continue;
      const o = this.readObject(kind, f.slice(0, -5));
      if (o && !leaseExpired(o, now)) out.push(o);
    }
    return out;
  }

  async create(obj: RegistryObject): Promise<RegistryObject> {
    checkObject(obj);
    return this.withLock((rev) => {
      if (this.readObject(obj.kind, obj.metadata.name)) {
        throw new VeilError('ALREADY_EXISTS', `${obj.kind} '${obj.metadata.name}' already exists`, 'pick another name, or delete the existing one first');
      }
      return this.commit(rev, 'ADDED', withCreation(obj, undefined));
    });
  }

  async update(obj: RegistryObject): Promise<RegistryObject> {
    checkObject(obj);
    return this.withLock((rev) => {
      const cur = this.readObject(obj.kind, obj.metadata.name);
      if (!cur) throw new VeilError('NOT_FOUND', `${obj.kind} '${obj.metadata.name}' not found`, 'create it first');
      const want = obj.metadata.resourceVersion;
      if (want !== undefined && want !== cur.metadata.resourceVersion) {
        throw new VeilError('CONFLICT', `${obj.kind} '${obj.metadata.name}' changed (resourceVersion ${cur.metadata.resourceVersion}, expected ${want})`, 'read it again and retry');
      }
      return this.commit(rev, 'MODIFIED', withCreation(obj, cur));
    });
  }

  async mutate(kind: Kind, name: string, fn: (cur: RegistryObject | undefined) => RegistryObject | undefined): Promise<RegistryObject | undefined> {
    checkKind(kind);
    checkName(name);
    // Under the lock nothing can move between the read and the write, so fn runs exactly once.
    return this.withLock((rev) => {
      const cur = this.readObject(kind, name);
      const next = fn(cur === undefined ? undefined : structuredClone(cur));
      if (next === undefined) return cur;
      checkObject(next);
      if (next.kind !== kind || next.metadata.name !== name) {
        throw new VeilError('INVALID_OBJECT', `mutate of ${kind} '${name}' returned ${next.kind} '${next.metadata.name}'`);
      }
      return this.commit(rev, cur ? 'MODIFIED' : 'ADDED', withCreation(next, cur));
    });
  }

  async delete(kind: Kind, name: string): Promise<boolean> {
    checkKind(kind);
    checkName(name);
    return this.withLock((rev) => {
      const cur = this.readObject(kind, name);
      if (!cur) return false;
      this.commit(rev, 'DELETED', cur);
      return true;
    });
  }

  async revision(): Promise<number> {
    return this.lastEvent()?.revision ?? 0;
  }

  watch(kind: Kind | undefined, sinceRevision: number, onEvent: (ev: WatchEvent) => void): Watch {
    if (kind !== undefined) checkKind(kind);
    const w = new LogWatch(this.dir, this.logPath, kind, sinceRevision, onEvent, this.opts.pollMs, () => this.watches.delete(w));
    this.watches.add(w);
    return w;
  }

  async holdLease(name: string, ttlSeconds: number, holder: Record<string, unknown>, onLost?: (e: Error) => void): Promise<LeaseHandle> {
    checkName(name);
    if (!(ttlSeconds > 0)) throw new VeilError('BAD_LEASE_TTL', `lease TTL must be positive, not ${ttlSeconds}`, 'pass a TTL in seconds, e.g. 15');
    const ttlMs = ttlSeconds * 1000;
    const renew = async (): Promise<void> => {
      const spec = { ...holder, renewTime: new Date().toISOString(), ttlSeconds };
      await this.mutate('Lease', name, (cur) => ({ kind: 'Lease', metadata: { name, creationTimestamp: cur?.metadata.creationTimestamp }, spec }));
      await this.deleteExpiredLeases();
    };
    await renew();
    let renewedAt = Date.now();
    let lost = false;
    let inFlight: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      inFlight = renew().then(() => { renewedAt = Date.now(); lost = false; }, (e: unknown) => {
        if (lost || Date.now() - renewedAt <= ttlMs) return;
        lost = true;
        onLost?.(e instanceof Error ? e : new Error(String(e)));
      });
    }, Math.max(1, Math.floor(ttlMs / 3)));
    timer.unref();
    return {
      release: async () => {
        clearInterval(timer);
        await inFlight;
        await this.delete('Lease', name);
      },
    };
  }

  /**
   * Files cannot expire by themselves: every renewal also deletes the leases nobody renewed in
   * time, so that watchers get a DELETED event for a holder that died.
   */
  private async deleteExpiredLeases(): Promise<void> {
    let files: string[];
    try { files = readdirSync(join(this.dir, 'objects', 'Lease')); } catch { return; }
    const now = Date.now();
    for (const f of files) {
      if (f.startsWith('.') || !f.endsWith('.json')) continue;
      const name = f.slice(0, -5);
      const o = this.readObject('Lease', name);
      if (!o || !leaseExpired(o, now)) continue;
      await this.withLock((rev) => {
        const cur = this.readObject('Lease', name); // renewed meanwhile? then it stays
        if (cur && leaseExpired(cur, Date.now())) this.commit(rev, 'DELETED', cur);
      });
    }
  }

  close(): void {
    for (const w of [...this.watches]) w.stop();
  }

  // ---- files ----

  private objectPath(kind: Kind, name: string): string {
    return join(this.dir, 'objects', kind, `${name}.json`);
  }

  private readObject(kind: Kind, name: string): RegistryObject | undefined {
    checkKind(kind);
    checkName(name);
    const text = readIfExists(this.objectPath(kind, name));
    return text === undefined ? undefined : (JSON.parse(text) as RegistryObject);
  }

  /** Appends the event (the commit point), then brings the object file in line with it. */
  private commit(prevRevision: number, type: WatchEventType, obj: RegistryObject): RegistryObject {
    const revision = prevRevision + 1;
    const stored = structuredClone(obj);
    stored.metadata.resourceVersion = revision;
    appendAll(this.logPath, JSON.stringify({ revision, type, object: stored }) + '\n');
    this.apply(type, stored);
    this.maybeCompact();
    return stored;
  }

  private apply(type: WatchEventType, obj: RegistryObject): void {
    const path = this.objectPath(obj.kind, obj.metadata.name);
    if (type === 'DELETED') unlinkIfExists(path);
    // Not fsync'd: an object file is rebuilt from the event log (the commit point) if a crash loses it.
    else writeFileAtomic(path, JSON.stringify(obj, null, 1));
  }

  /** The last complete, parseable event in the log (the log's own revision). */
  private lastEvent(): LogEvent | undefined {
    const { lines } = readTailLines(this.logPath);
    for (let i = lines.length - 1; i >= 0; i--) {
      const ev = parseEvent(lines[i]!);
      if (ev) return ev;
    }
    return undefined;
  }

  /**
   * Finishes what a writer killed mid-way left: a torn last line is closed off (readers skip it:
   * it never committed), and the last committed event is applied to its object file if it was not.
   * Returns the current revision.
   */
  private recover(): number {
    const { endsWithNewline } = readTailLines(this.logPath);
    if (!endsWithNewline) appendAll(this.logPath, '\n');
    const last = this.lastEvent();
    if (!last) return 0;
    const o = last.object;
    const cur = this.readObject(o.kind, o.metadata.name);
    if (last.type === 'DELETED' ? cur !== undefined && (cur.metadata.resourceVersion ?? 0) < last.revision
      : (cur?.metadata.resourceVersion ?? 0) < last.revision) {
      this.apply(last.type, o);
    }
    return last.revision;
  }

  private maybeCompact(): void {
    let size = 0;
    try {
      const fd = openSync(this.logPath, 'r');
      try { size = fstatSync(fd).size; } finally { closeSync(fd); }
    } catch { return; }
    if (size <= this.opts.compactBytes) return;
    const events = readFileSync(this.logPath, 'utf8').split('\n').map(parseEvent).filter((e): e is LogEvent => !!e);
    writeCompacted(this.logPath, compactEvents(events, this.opts.keepRecentEvents));
  }

  // ---- the writers' lock ----

  /**
   * A commit appends its event (which watchers may already have delivered) before it writes the
   * object file, all under the lock: a read waits until no commit is in flight, so that it never
   * returns a version older than an event already seen. A dead holder's commit is recovered first.
   */
  private async commitsLanded(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const holder = readIfExists(this.lockPath);
      if (holder === undefined) return;
      if (!pidAlive(Number.parseInt(holder, 10))) { await this.withLock(() => undefined); return; }
      await sleep(Math.min(1 + attempt, 20) * (0.5 + Math.random()));
    }
  }

  private async withLock<T>(fn: (revision: number) => T): Promise<T> {
    // Directories appear with the first write, so that reading a cluster never creates it.
    for (const k of KINDS) mkdirSync(join(this.dir, 'objects', k), { recursive: true });
    const token = await this.acquire();
    try {
      return fn(this.recover());
    } finally {
      if (readIfExists(this.lockPath) === token) unlinkIfExists(this.lockPath);
    }
  }

  private async acquire(): Promise<string> {
    const token = `${process.pid} ${randomUUID()}\n`;
    const tmp = join(this.dir, `.lock.${process.pid}.${randomUUID()}`);
    writeFileSync(tmp, token);
    const deadline = Date.now() + this.opts.lockTimeoutMs;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          linkSync(tmp, this.lockPath); // atomic, whole content, fails if held
          return token;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        const holder = readIfExists(this.lockPath);
        if (holder !== undefined && !pidAlive(Number.parseInt(holder, 10))) {
          this.breakStaleLock(holder);
          continue;
        }
        if (Date.now() > deadline) {
          throw new VeilError('LOCK_TIMEOUT', `the registry lock ${this.lockPath} is held by pid ${holder?.split(' ')[0] ?? '?'} for too long`, 'wait for that veil process to finish, or stop it');
        }
        await sleep(Math.min(1 + attempt, 20) * (0.5 + Math.random()));
      }
    } finally {
      unlinkIfExists(tmp);
    }
  }

  /**
   * The holder died with the lock. Move the lock aside and check it is still the dead holder's
   * before deleting it; if a live writer took it in between, put it back.
   */
  private breakStaleLock(observed: string): void {
    const aside = join(this.dir, `.lock.stale.${process.pid}.${randomUUID()}`);
    try { renameSync(this.lockPath, aside); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    if (readIfExists(aside) !== observed) {
      try { linkSync(aside, this.lockPath); } catch { /* yet another writer got in: it holds the lock now */ }
    }
    unlinkIfExists(aside);
  }
}

// ---- the event log ----

interface LogEvent {
  revision: number;
  type: WatchEventType;
  object: RegistryObject;
}

function parseEvent(line: string): LogEvent | undefined {
  if (!line) return undefined;
  try {
    const ev = JSON.parse(line) as LogEvent;
    return typeof ev.revision === 'number' && ev.object?.metadata ? ev : undefined;
  } catch {
    return undefined; // a line torn by a killed writer: it never committed
  }
}

/**
 * Shrinks a log: the last `keepRecent` events stay verbatim; of the older ones only each object's
 * latest event stays (and only if no recent event supersedes it), deletions as bounded tombstones.
 * A watcher that fell behind thus still reaches the current state, in revision order.
 */
export function compactEvents<E extends { revision: number; type: WatchEventType; object: RegistryObject }>(events: E[], keepRecent: number): E[] {
  const cut = Math.max(0, events.length - keepRecent);
  const recent = events.slice(cut);
  const key = (e: E) => `${e.object.kind}/${e.object.metadata.name}`;
  const inRecent = new Set(recent.map(key));
  const latestOld = new Map<string, E>();
  for (const e of events.slice(0, cut)) if (!inRecent.has(key(e))) latestOld.set(key(e), e);
  let old = [...latestOld.values()].sort((a, b) => a.revision - b.revision);
  const tombstones = old.filter((e) => e.type === 'DELETED');
  if (tombstones.length > MAX_TOMBSTONES) {
    const drop = new Set(tombstones.slice(0, tombstones.length - MAX_TOMBSTONES));
    old = old.filter((e) => !drop.has(e));
  }
  return [...old, ...recent];
}

/** The compacted log replaces the commit point itself: durably. */
function writeCompacted(path: string, events: LogEvent[]): void {
  writeFileDurable(path, events.map((e) => JSON.stringify(e) + '\n').join(''));
}

/** Tails the event log of one registry for one watcher: fs.watch wakes it, a timer backs it up. */
class LogWatch implements Watch {
  private ino = -1;
  private offset = 0;
  private rest: Buffer = Buffer.alloc(0);
  private last: number;
  private stopped = false;
  private readonly timer: NodeJS.Timeout;
  private readonly fsw: FSWatcher | undefined;
  private pending = false;

  constructor(
    dir: string,
    private readonly logPath: string,
    private readonly kind: Kind | undefined,
    since: number,
    private readonly onEvent: (ev: WatchEvent) => void,
    pollMs: number,
    private readonly onStop: () => void,
  ) {
    this.last = since;
    this.timer = setInterval(() => this.poll(), pollMs);
    try {
      this.fsw = fsWatch(dir, () => this.schedule());
      this.fsw.on('error', () => { /* the timer carries on */ });
    } catch {
      this.fsw = undefined;
    }
    this.schedule();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.fsw?.close();
    this.onStop();
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => { this.pending = false; this.poll(); });
  }

  private poll(): void {
    if (this.stopped) return;
    let fd: number;
    try { fd = openSync(this.logPath, 'r'); } catch { return; }
    let chunk: Buffer;
    try {
      const st = fstatSync(fd);
      if (st.ino !== this.ino || st.size < this.offset) {
        // A new log (compaction) or a fresh store: read it from the start, skipping what we saw.
        this.ino = st.ino;
        this.offset = 0;
        this.rest = Buffer.alloc(0);
      }
      if (st.size === this.offset) return;
      chunk = Buffer.alloc(st.size - this.offset);
      let got = 0;
      while (got < chunk.length) {
        const n = readSync(fd, chunk, got, chunk.length - got, this.offset + got);
        if (n === 0) break;
        got += n;
      }
      chunk = chunk.subarray(0, got);
      this.offset += got;
    } finally {
      closeSync(fd);
    }
    const buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const end = buf.lastIndexOf(0x0a);
    if (end < 0) { this.rest = Buffer.from(buf); return; }
    this.rest = Buffer.from(buf.subarray(end + 1)); // an append still in progress
    for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
      if (this.stopped) return;
      const ev = parseEvent(line);
      if (!ev || ev.revision <= this.last) continue;
      this.last = ev.revision;
      if (this.kind !== undefined && ev.object.kind !== this.kind) continue;
      try {
        this.onEvent({ type: ev.type, revision: ev.revision, object: ev.object });
      } catch (e) {
        queueMicrotask(() => { throw e; }); // the handler's bug: surface it, keep our place
      }
    }
  }
}

// ---- small file helpers ----

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function unlinkIfExists(path: string): void {
  try { unlinkSync(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function appendAll(path: string, text: string): void {
  const fd = openSync(path, 'a');
  try {
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  } finally {
    closeSync(fd);
  }
}

/** The complete lines at the end of a file (enough of them to hold the last one). */
function readTailLines(path: string): { lines: string[]; endsWithNewline: boolean } {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], endsWithNewline: true };
    throw e;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return { lines: [], endsWithNewline: true };
    for (let want = 64 * 1024; ; want *= 4) {
      const start = Math.max(0, size - want);
      const buf = Buffer.alloc(size - start);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, start + got);
        if (n === 0) break;
        got += n;
      }
      const text = buf.subarray(0, got).toString('utf8');
      const endsWithNewline = text.endsWith('\n');
      const parts = text.split('\n');
      parts.pop(); // after the last newline: empty, or a torn line
      if (start > 0) parts.shift(); // may be the tail of a line that began before our window
      if (parts.some((l) => l.length > 0) || start === 0) return { lines: parts, endsWithNewline };
    }
  } finally {
    closeSync(fd);
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A Lease whose holder has not renewed it within its TTL: as good as deleted. */
function leaseExpired(o: RegistryObject, now: number): boolean {
  if (o.kind !== 'Lease') return false;
  const renewed = Date.parse(String(o.spec?.['renewTime'] ?? ''));
  const ttl = Number(o.spec?.['ttlSeconds']);
  return !Number.isFinite(renewed) || !Number.isFinite(ttl) || now - renewed > ttl * 1000;
}

