// The registry on a real etcd v3: objects at veil/<cluster>/<plural kind>/<name> as JSON,
// resourceVersion = the key's mod_revision, revision() = etcd's header revision. create is a txn on
// create_revision == 0, update a compare-and-swap on mod_revision, mutate read + CAS retried.
// Values that are not valid objects (someone else's garbage) are skipped by list and watch and
// reported by onInvalid / invalidObjects(), so an agent can name them in its status.
import type { Etcd3, IKeyValue, IRangeRequest, IRangeResponse, ITxnRequest } from 'etcd3';
import { VeilError } from '../../util/errors.js';
import type { HeldVersions, Kind, KindChanges, LeaseHandle, Registry, RegistryMember, RegistryObject, Watch, WatchEvent } from '../registry.js';
import { checkKind, checkName, checkObject, withCreation } from '../object-checks.js';
import { clusterPrefix, kindPrefix, objectKey, parseObjectKey } from './keys.js';
import { decodeObject, encodeObject } from './object-codec.js';
import { connectEtcd, type EtcdConnectionOptions } from './etcd-connection.js';
import { etcdError } from './etcd-errors.js';
import { EtcdWatch, isCompacted } from './etcd-watch.js';
import { EtcdLease } from './etcd-lease.js';
import { prefixRange } from './etcd3-lib.js';
import { readRangeKeys, readTxnRanges } from './range-key-versions.js';

const MEMBER_CHECK_TIMEOUT_MS = 1500;
/** Values per list page: 64 of etcd's largest (1.5 MiB by default) fit in MAX_RECEIVE_BYTES. */
const LIST_PAGE = 64;
/** Keys per page when the values are left out: a key is at most a few hundred bytes (~1 MiB a page at the most). */
const KEYS_PAGE = 4096;

export interface EtcdRegistryOptions extends EtcdConnectionOptions {
  /** The veil cluster: the key prefix veil/<cluster>/. */
  cluster: string;
  /** A value that is not a valid object was met (and skipped) at key. */
  onInvalid?: (key: string, reason: string) => void;
  /** A watch lost its stream or was refused; it keeps retrying by itself. */
  onWatchError?: (e: VeilError) => void;
  /** Keys per page of a listing of names and versions (default 4096; tests make pages small to cross their boundaries). */
  keysPage?: number;
  /** Give up a mutate that keeps conflicting after this long (ms, default 30 s). */
  mutateTimeoutMs?: number;
  /** A watch stream silent this long is asked for progress, and reopened if it stays silent as
   *  long again, or if it is not created within this long (ms, default 3 s). */
  watchStallMs?: number;
}

export interface InvalidObject {
  key: string;
  reason: string;
}

export class EtcdRegistry implements Registry {
  readonly cluster: string;
  private readonly client: Etcd3;
  private readonly opts: EtcdRegistryOptions;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<EtcdLease>();
  private readonly invalid = new Map<string, string>();

  constructor(opts: EtcdRegistryOptions) {
    checkName(opts.cluster);
    this.cluster = opts.cluster;
    this.opts = opts;
    this.client = connectEtcd(opts);
  }

  /** Values under this cluster's prefix seen to be invalid (and skipped), until fixed or deleted. */
  invalidObjects(): InvalidObject[] {
    return [...this.invalid].map(([key, reason]) => ({ key, reason }));
  }

  async get(kind: Kind, name: string): Promise<RegistryObject | undefined> {
    checkKind(kind);
    checkName(name);
    const kv = await this.readKv(kind, name);
    if (!kv) return undefined;
    const dec = decodeObject(this.cluster, kv);
    this.report(dec.key, dec.ok ? undefined : dec.reason);
    if (!dec.ok) throw invalidObject(dec.key, dec.reason);
    return dec.object;
  }

  async list(kind: Kind): Promise<RegistryObject[]> {
    checkKind(kind);
    const out: RegistryObject[] = [];
    for await (const kv of this.rangePages(kind)) {
      const dec = decodeObject(this.cluster, kv);
      this.report(dec.key, dec.ok ? undefined : dec.reason);
      if (dec.ok) out.push(dec.object);
    }
    return out;
  }

  async versions(kind: Kind): Promise<Map<string, number>> {
    return (await this.changedSince(kind, undefined)).versions;
  }

  async changedSince(kind: Kind, since: number | undefined): Promise<KindChanges> {
    checkKind(kind);
    const versions = new Map<string, number>();
    const add = (kvs: IKeyValue[]) => {
      for (const kv of kvs) {
        const where = parseObjectKey(this.cluster, kv.key.toString());
        if (where) versions.set(where.name, Number(kv.mod_revision));
      }
    };
    if (since === undefined) {
      const at = { revision: 0 };
      if (rawRangeInstalled(this.client)) return { revision: await this.keyVersionPages(kind, versions), count: versions.size, versions };
      for await (const kv of this.rangePages(kind, true, at)) add([kv]);
      return { revision: at.revision, count: versions.size, versions };
    }
    // One transaction: the count and the keys that moved, as of one revision.
    const { key, range_end } = prefixRange(kindPrefix(this.cluster, kind));
    const req: ITxnRequest = {
      compare: [],
      success: [
        { request_range: { key, range_end, count_only: true } },
        { request_range: { key, range_end, keys_only: true, min_mod_revision: String(since + 1) } },
      ],
      failure: [],
    };
    const what = `listing ${kind} objects changed since revision ${since}`;
    if (rawRangeInstalled(this.client)) { // read undecoded: a name and a number a moved key
      const prefixBytes = key.length;
      const answer = await this.call(what, () => this.pool().exec('KV', RAW_TXN, req));
      const res = readTxnRanges(answer, (buf, start, end, modRevision, range) => {
        if (range === 1 && end - start > prefixBytes) versions.set(buf.toString('utf8', start + prefixBytes, end), modRevision);
      });
      if (res.ranges.length !== 2) throw new VeilError('ETCD_BAD_ANSWER', `etcd answered ${res.ranges.length} ranges to a transaction of 2`, 'check that the endpoint is etcd v3');
      return { revision: res.revision, count: res.ranges[0]!.count, versions };
    }
    const res = await this.call(what, () => this.client.kv.txn(req));
    const [counted, moved] = res.responses.map((r) => r.response_range);
    add(moved!.kvs);
    return { revision: Number(res.header.revision), count: Number(counted!.count), versions };
  }

  async create(obj: RegistryObject): Promise<RegistryObject> {
    checkObject(obj);
    const stored = withCreation(obj, undefined);
    const rev = await this.casPut(obj.kind, obj.metadata.name, 0, stored);
    if (rev === undefined) {
      throw new VeilError('ALREADY_EXISTS', `${obj.kind} '${obj.metadata.name}' already exists`, 'pick another name, or delete the existing one first');
    }
    stored.metadata.resourceVersion = rev;
    return stored;
  }

  async update(obj: RegistryObject): Promise<RegistryObject> {
    checkObject(obj);
    const want = obj.metadata.resourceVersion;
    const deadline = Date.now() + (this.opts.mutateTimeoutMs ?? 30_000);
    for (;;) {
      const kv = await this.readKv(obj.kind, obj.metadata.name);
      if (!kv) throw new VeilError('NOT_FOUND', `${obj.kind} '${obj.metadata.name}' not found`, 'create it first');
      const modRev = Number(kv.mod_revision);
      if (want !== undefined && want !== modRev) throw conflict(obj, modRev, want);
      const cur = decodeObject(this.cluster, kv);
      const stored = withCreation(obj, cur.ok ? cur.object : undefined);
      const rev = await this.casPut(obj.kind, obj.metadata.name, modRev, stored);
      if (rev !== undefined) {
        stored.metadata.resourceVersion = rev;
        return stored;
      }
      // Moved between our read and our write: with a resourceVersion that is a conflict, without
      // one the caller asked for last-writer-wins, so read again.
      if (want !== undefined || Date.now() > deadline) {
        const now = await this.readKv(obj.kind, obj.metadata.name);
        if (!now) throw new VeilError('NOT_FOUND', `${obj.kind} '${obj.metadata.name}' not found`, 'create it first');
        throw conflict(obj, Number(now.mod_revision), want ?? modRev);
      }
    }
  }

  async mutate(kind: Kind, name: string, fn: (cur: RegistryObject | undefined) => RegistryObject | undefined): Promise<RegistryObject | undefined> {
    checkKind(kind);
    checkName(name);
    const deadline = Date.now() + (this.opts.mutateTimeoutMs ?? 30_000);
    for (let attempt = 0; ; attempt++) {
      const kv = await this.readKv(kind, name);
      const dec = kv ? decodeObject(this.cluster, kv) : undefined;
      if (dec) this.report(dec.key, dec.ok ? undefined : dec.reason);
      // A value that is not an object counts as absent: fn's object replaces it (CAS on its revision).
      const cur = dec?.ok ? dec.object : undefined;
      const next = fn(cur === undefined ? undefined : structuredClone(cur));
      if (next === undefined) return cur;
      checkObject(next);
      if (next.kind !== kind || next.metadata.name !== name) {
        throw new VeilError('INVALID_OBJECT', `mutate of ${kind} '${name}' returned ${next.kind} '${next.metadata.name}'`);
      }
      const stored = withCreation(next, cur);
      const rev = await this.casPut(kind, name, kv ? Number(kv.mod_revision) : 0, stored);
      if (rev !== undefined) {
        stored.metadata.resourceVersion = rev;
        return stored;
      }
      if (Date.now() > deadline) {
        throw new VeilError('CONFLICT', `${kind} '${name}' kept changing under ${attempt + 1} attempts to update it`, 'retry later; many writers are updating it at once');
      }
      if (attempt >= 3) await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * attempt)));
    }
  }

  async delete(kind: Kind, name: string): Promise<boolean> {
    checkKind(kind);
    checkName(name);
    const key = Buffer.from(objectKey(this.cluster, kind, name));
    const res = await this.call(`deleting ${kind} '${name}'`, () => this.client.kv.deleteRange({ key }));
    this.report(key.toString(), undefined);
    return Number(res.deleted) > 0;
  }

  async revision(): Promise<number> {
    const res = await this.call('reading the revision', () => this.client.kv.range({ key: Buffer.from(clusterPrefix(this.cluster)), count_only: true }));
    return Number(res.header.revision);
  }

  watch(kind: Kind | undefined, sinceRevision: number, onEvent: (ev: WatchEvent) => void, held?: HeldVersions): Watch {
    if (kind !== undefined) checkKind(kind);
    const w: EtcdWatch = new EtcdWatch({
      held: kind !== undefined && held ? { kind, versions: held } : undefined,
      client: this.client,
      cluster: this.cluster,
      prefix: kindPrefix(this.cluster, kind),
      onEvent,
      report: (key, reason) => this.report(key, reason),
      onError: async (e) => {
        const err = await etcdError(e, this.opts, `watching ${kind ?? 'all'} objects`);
        this.opts.onWatchError?.(err);
        return err;
      },
      onStop: () => this.watches.delete(w),
      stallMs: this.opts.watchStallMs,
    }, sinceRevision);
    this.watches.add(w);
    return w;
  }

  async holdLease(name: string, ttlSeconds: number, holder: Record<string, unknown>, onLost?: (e: Error) => void): Promise<LeaseHandle> {
    checkName(name);
    const lease = await EtcdLease.hold({
      client: this.client, key: objectKey(this.cluster, 'Lease', name), name, ttlSeconds, holder, onLost,
      explain: (e, doing) => etcdError(e, this.opts, doing),
    });
    this.leases.add(lease);
    return {
      release: async () => {
        this.leases.delete(lease);
        await lease.release();
      },
    };
  }

  async forgetHistoryBefore(revision: number): Promise<void> {
    try {
      // physical: the call returns once every member has removed the old revisions, not merely queued it
      await this.client.kv.compact({ revision: String(revision), physical: true });
    } catch (e) {
      if (isCompacted(e)) return; // compacted to this revision or later already (another agent)
      throw await etcdError(e, this.opts, `compacting etcd's history to revision ${revision}`);
    }
  }

  /** Asks every endpoint alone for its status (a short deadline: a dead member is a finding). */
  async members(): Promise<RegistryMember[]> {
    return Promise.all(this.opts.endpoints.map(async (endpoint): Promise<RegistryMember> => {
      const one = connectEtcd({ ...this.opts, endpoints: [endpoint], callTimeoutMs: MEMBER_CHECK_TIMEOUT_MS });
      try {
        await one.maintenance.status();
        return { endpoint, healthy: true };
      } catch (e) {
        return { endpoint, healthy: false, error: (await etcdError(e, { ...this.opts, endpoints: [endpoint] }, 'asking the member for its status')).message };
      } finally {
        one.close();
      }
    }));
  }

  /** Stops watches and renewals (held leases then expire after their TTL) and closes the connections. */
  close(): void {
    for (const w of [...this.watches]) w.stop();
    for (const l of this.leases) l.abandon();
    this.leases.clear();
    this.client.close();
  }

  // ---- helpers ----

  /**
   * Every key-value of a kind, in pages read at one revision (a consistent list). A page holds at
   * most LIST_PAGE values, each at most etcd's request limit (1.5 MiB by default), so it always fits
   * in what the client takes (MAX_RECEIVE_BYTES): a few oversized values never make the whole list
   * fail. (A refused answer would not do: etcd3 takes RESOURCE_EXHAUSTED for a connection fault and
   * resets the connection, watches and lease keepalives with it.)
   */
  /** keysOnly: each key's versions without its value (etcd's keys_only). */
  /** Every object of a kind, page by page, all pages as of one revision (told in `at`). */
  private async *rangePages(kind: Kind, keysOnly = false, at?: { revision: number }): AsyncGenerator<IKeyValue> {
    const { key, range_end } = prefixRange(kindPrefix(this.cluster, kind));
    let from = key;
    let revision: string | undefined;
    for (;;) {
      const res: IRangeResponse = await this.call(`listing ${kind} objects`, () => this.client.kv.range({ key: from, range_end, limit: keysOnly ? this.opts.keysPage ?? KEYS_PAGE : LIST_PAGE, ...(keysOnly ? { keys_only: true } : {}), ...(revision ? { revision } : {}) }));
      revision ??= res.header.revision;
      if (at) at.revision = Number(revision);
      yield* res.kvs;
      if (!res.more || !res.kvs.length) return;
      from = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
    }
  }

  /**
   * Every key of a kind and its mod_revision into versions, in pages read at one revision (which it
   * returns), the answers read by readRangeKeys: a name and a number a key, no KeyValue objects.
   */
  /**
   * Whether a complete listing of names and versions reads etcd's answers undecoded (false: the
   * etcd3 library's own decoding, ~20 MB of garbage at 5,000 nodes, as after an upgrade of it that
   * changed the shape rawRangeInstalled expects).
   */
  get listsNamesUndecoded(): boolean {
    return rawRangeInstalled(this.client);
  }

  /** The etcd3 client's connection pool: its exec calls a method of the gRPC service client (the undecoded ones installed by rawRangeInstalled). */
  private pool(): { exec(service: string, method: string, req: IRangeRequest | ITxnRequest): Promise<Buffer> } {
    return (this.client as unknown as { pool: { exec(service: string, method: string, req: IRangeRequest | ITxnRequest): Promise<Buffer> } }).pool;
  }

  private async keyVersionPages(kind: Kind, versions: Map<string, number>): Promise<number> {
    const { key, range_end } = prefixRange(kindPrefix(this.cluster, kind));
    const pool = this.pool();
    const prefixBytes = key.length; // every key in the range starts with the kind's prefix: the rest is the name (as parseObjectKey reads it)
    let lastStart = 0, lastEnd = 0;
    const onKey = (buf: Buffer, start: number, end: number, modRevision: number) => {
      if (end - start > prefixBytes) versions.set(buf.toString('utf8', start + prefixBytes, end), modRevision);
      lastStart = start; lastEnd = end;
    };
    let from = key;
    let revision: number | undefined;
    for (;;) {
      const req: IRangeRequest = { key: from, range_end, limit: this.opts.keysPage ?? KEYS_PAGE, keys_only: true, ...(revision ? { revision: String(revision) } : {}) };
      const answer = await this.call(`listing ${kind} names`, () => pool.exec('KV', RAW_RANGE, req));
      const page = readRangeKeys(answer, onKey);
      revision ??= page.revision;
      if (!page.more || !page.keys) return revision;
      from = Buffer.concat([answer.subarray(lastStart, lastEnd), Buffer.from([0])]);
    }
  }

  private async readKv(kind: Kind, name: string): Promise<IKeyValue | undefined> {
    const res = await this.call(`reading ${kind} '${name}'`, () => this.client.kv.range({ key: Buffer.from(objectKey(this.cluster, kind, name)) }));
    return res.kvs[0];
  }

  /** Puts stored if the key's mod_revision is still modRev (0: the key is absent). The new revision, or undefined. */
  private async casPut(kind: Kind, name: string, modRev: number, stored: RegistryObject): Promise<number | undefined> {
    const key = Buffer.from(objectKey(this.cluster, kind, name));
    const value = encodeObject(stored);
    const res = await this.call(`writing ${kind} '${name}'`, () => this.client.kv.txn({
      compare: [modRev === 0
        ? { key, target: 'Create', result: 'Equal', create_revision: 0 }
        : { key, target: 'Mod', result: 'Equal', mod_revision: modRev }],
      success: [{ request_put: { key, value: Buffer.from(value) } }],
      // on failure, what is there now: if it is exactly our value, written after modRev, then an
      // earlier attempt of this same call committed (the client retries a call whose answer was
      // lost, e.g. when the leader died) and this "failure" is our own write
      failure: [{ request_range: { key } }],
    }));
    if (res.succeeded) return Number(res.header.revision);
    const now = res.responses[0]?.response_range?.kvs[0];
    if (now && now.value.toString() === value && Number(now.mod_revision) > modRev) return Number(now.mod_revision);
    return undefined;
  }

  private async call<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw await etcdError(e, this.opts, doing);
    }
  }

  private report(key: string, reason: string | undefined): void {
    if (reason === undefined) { this.invalid.delete(key); return; }
    const known = this.invalid.get(key) === reason;
    this.invalid.set(key, reason);
    if (!known) this.opts.onInvalid?.(key, reason);
  }
}

/** The KV client's methods that answer a Range and a Txn undecoded (installed by rawRangeInstalled). */
const RAW_RANGE = 'veilRangeUndecoded';
const RAW_TXN = 'veilTxnUndecoded';

type GrpcMethod = { path: string; requestSerialize: (req: unknown) => Buffer };
type UnaryCall = (req: unknown, metadata: unknown, options: unknown, cb: unknown) => unknown;

interface GrpcKvClient {
  Range?: GrpcMethod;
  Txn?: GrpcMethod;
  makeUnaryRequest?: (...args: unknown[]) => unknown;
  [RAW_RANGE]?: UnaryCall;
  [RAW_TXN]?: UnaryCall;
}

/**
 * Whether the etcd3 client can answer a Range as bytes: its KV service class (gRPC's) gets a method
 * that is its Range with the answer left undecoded, so the call goes the library's whole way (auth,
 * retries, deadlines, endpoint breakers, its errors) and only the decoding is ours. False where the
 * library is not shaped as expected (another etcd3 version): then its own decoding is used.
 */
function rawRangeInstalled(client: Etcd3): boolean {
  const pool = (client as unknown as { pool?: { hosts?: { getServiceClient(name: string): unknown }[] } }).pool;
  let kv: GrpcKvClient | undefined;
  try {
    kv = pool?.hosts?.[0]?.getServiceClient('KV') as GrpcKvClient | undefined;
  } catch {
    return false; // closed
  }
  const proto = kv && (Object.getPrototypeOf(kv) as GrpcKvClient);
  const range = proto?.Range, txn = proto?.Txn;
  const usable = (m: GrpcMethod | undefined): m is GrpcMethod => !!m?.path && typeof m.requestSerialize === 'function';
  if (!proto || !usable(range) || !usable(txn) || typeof proto.makeUnaryRequest !== 'function') return false;
  const undecoded = (m: GrpcMethod): UnaryCall => function (this: GrpcKvClient, req, metadata, options, cb) {
    return this.makeUnaryRequest!(m.path, m.requestSerialize, (answer: Buffer) => answer, req, metadata, options, cb);
  };
  proto[RAW_RANGE] ??= undecoded(range);
  proto[RAW_TXN] ??= undecoded(txn);
  return true;
}

function conflict(obj: RegistryObject, have: number, want: number): VeilError {
  return new VeilError('CONFLICT', `${obj.kind} '${obj.metadata.name}' changed (resourceVersion ${have}, expected ${want})`, 'read it again and retry');
}

function invalidObject(key: string, reason: string): VeilError {
  return new VeilError('INVALID_OBJECT', `the value at ${key} in etcd is not a valid object: ${reason}`, `fix it or delete it (etcdctl del ${key}); its writer is not veil`);
}
