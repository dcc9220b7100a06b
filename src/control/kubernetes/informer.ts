// An informer: a cache of one kind of Kubernetes object kept current by list + watch, the way
// client-go's reflector does it. The watch resumes from the last resourceVersion seen (an event's,
// or a BOOKMARK's, so a quiet watch does not fall behind the server's history); a 410 Gone (the
// server's history no longer reaches back to it) makes a fresh list, whose differences from the
// cache are delivered as events, so no change is lost across the gap. Any other failure retries with
// backoff. The client's own ListWatch neither asks for bookmarks nor restarts after an error, so
// this one is written here over the client's list call and its Watch.
import * as k8s from '@kubernetes/client-node';
import { apiErrorMessage, apiStatusCode } from './kube-errors.js';

export type KubeObject = k8s.KubernetesObject & Record<string, unknown>;

export interface InformerTarget {
  apiVersion: string;
  kind: string;
  /** The collection's URL path, e.g. /api/v1/nodes or /apis/coordination.k8s.io/v1/namespaces/veil/leases. */
  path: string;
  namespace?: string;
}

export interface InformerHandlers {
  /** An object was added or changed (also for what a relist found changed). */
  upsert(obj: KubeObject): void;
  /** An object went (also for what a relist no longer found). */
  remove(obj: KubeObject): void;
  /** The cache was (re)filled by a list. */
  synced?(): void;
  /** A list or watch failed (it is retried). */
  error?(message: string): void;
  /** A list failed (it is retried): the cache may be stale until synced() comes. */
  listFailed?(message: string): void;
}

export interface InformerStats { lists: number; watches: number; expired: number; bookmarks: number; errors: number }

const WATCH_TIMEOUT_S = 300;
const MAX_BACKOFF_MS = 30_000;

function nameOf(o: k8s.KubernetesObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/** A list's item as JSON, whatever classes the client decoded it into (dates as the API's strings). */
function plain(o: k8s.KubernetesObject): KubeObject {
  return JSON.parse(JSON.stringify(o)) as KubeObject;
}

export class Informer {
  private readonly cache = new Map<string, KubeObject>();
  private resourceVersion = '';
  private stopped = false;
  private request?: AbortController;
  private watchdog?: NodeJS.Timeout;
  private retry?: NodeJS.Timeout;
  private backoffMs = 500;
  readonly stats: InformerStats = { lists: 0, watches: 0, expired: 0, bookmarks: 0, errors: 0 };

  constructor(private readonly kc: k8s.KubeConfig, private readonly target: InformerTarget, private readonly on: InformerHandlers) {}

  /** Lists once (failing if that fails), then keeps watching until stop(). */
  async start(): Promise<void> {
    await this.list();
    void this.watch();
  }

  /** Lists and watches, retrying a failed list with backoff (listFailed says why) until stop(). */
  startInBackground(): void {
    void this.resume();
  }

  items(): KubeObject[] {
    return [...this.cache.values()];
  }

  get(name: string, namespace = ''): KubeObject | undefined {
    return this.cache.get(`${namespace}/${name}`);
  }

  /** The resourceVersion the next watch resumes from. */
  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  stop(): void {
    this.stopped = true;
    this.request?.abort();
    if (this.watchdog) clearTimeout(this.watchdog);
    if (this.retry) clearTimeout(this.retry);
  }

  private async list(): Promise<void> {
    const api = k8s.KubernetesObjectApi.makeApiClient(this.kc);
    const list = await api.list(this.target.apiVersion, this.target.kind, this.target.namespace);
    this.stats.lists++;
    const seen = new Set<string>();
    for (const item of list.items) {
      const o = plain(item);
      const k = nameOf(o);
      seen.add(k);
      if (this.cache.get(k)?.metadata?.resourceVersion === o.metadata?.resourceVersion) continue;
      this.cache.set(k, o);
      this.on.upsert(o);
    }
    for (const [k, o] of [...this.cache]) if (!seen.has(k)) { this.cache.delete(k); this.on.remove(o); }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.on.synced?.();
  }

  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    // The server ends the watch after timeoutSeconds; a connection silent well past that is dead.
    this.watchdog = setTimeout(() => this.request?.abort(), (WATCH_TIMEOUT_S + 30) * 1000);
    this.watchdog.unref();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const w = new k8s.Watch(this.kc);
    this.stats.watches++;
    let failed: unknown;
    const done = (err: unknown): void => {
      if (this.watchdog) clearTimeout(this.watchdog);
      if (this.stopped) return;
      const e = err ?? failed;
      if (apiStatusCode(e) === 410) { this.stats.expired++; this.resourceVersion = ''; }
      // 404: the collection went (a CRD or a namespace deleted): relist, which says so, until it is back
      if (apiStatusCode(e) === 404) this.resourceVersion = '';
      if (e && apiStatusCode(e) !== 410 && (e as { name?: string }).name !== 'AbortError') {
        this.stats.errors++;
        this.on.error?.(`watch ${this.target.path}: ${apiErrorMessage(e)}`);
        this.schedule();
        return;
      }
      this.backoffMs = 500;
      void this.resume();
    };
    try {
      this.armWatchdog();
      this.request = await w.watch(this.target.path, { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_S }, (type, obj: KubeObject) => {
        this.armWatchdog();
        this.event(type, obj, (e) => { failed = e; });
      }, done);
    } catch (e) {
      done(e);
    }
  }

  private event(type: string, obj: KubeObject, fail: (e: unknown) => void): void {
    if (type === 'ERROR') {
      const code = (obj as { code?: number }).code;
      if (code === 410) { this.stats.expired++; this.resourceVersion = ''; } // relist on the next round
      else fail(Object.assign(new Error(String((obj as { message?: string }).message ?? 'watch error')), { code }));
      return;
    }
    const rv = obj.metadata?.resourceVersion;
    if (type === 'BOOKMARK') { this.stats.bookmarks++; if (rv) this.resourceVersion = rv; return; }
    const k = nameOf(obj);
    if (type === 'DELETED') { this.cache.delete(k); this.on.remove(obj); } else { this.cache.set(k, obj); this.on.upsert(obj); }
    if (rv) this.resourceVersion = rv;
  }

  /** After a watch ended: a new watch from where it stopped, or a list first if that is gone. */
  private async resume(): Promise<void> {
    if (this.stopped) return;
    if (!this.resourceVersion) {
      try {
        await this.list();
      } catch (e) {
        this.stats.errors++;
        this.on.error?.(`list ${this.target.path}: ${apiErrorMessage(e)}`);
        this.on.listFailed?.(apiErrorMessage(e));
        this.schedule();
        return;
      }
    }
    void this.watch();
  }

  private schedule(): void {
    if (this.stopped) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.retry = setTimeout(() => { void this.resume(); }, wait);
  }
}
