// The registry: the cluster's shared state (nodes, pods, secrets, config, what agents publish).
// One interface, several backends: embedded (files in $VEIL_HOME, the default and the lab's),
// later etcd and Kubernetes. Objects look like Kubernetes objects so that the CLI can print them
// the way kubectl does.

export type Kind = 'Node' | 'Pod' | 'Secret' | 'ConfigMap' | 'Lease' | 'Peer';

export interface ObjectMeta {
  name: string;
  /** Set by the registry: the revision of the store at this object's last write. */
  resourceVersion?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RegistryObject {
  kind: Kind;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  /** Secrets: the secret type, e.g. 'Opaque' (as in Kubernetes). */
  type?: string;
  /** Secrets: base64 values; ConfigMaps: plain strings. */
  data?: Record<string, string>;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  /** The store revision this event produced; strictly increasing across all kinds. */
  revision: number;
  /**
   * The object; for DELETED the object as it was, except after an etcd watch relisted (its revision
   * compacted away): then its kind, name and last resourceVersion alone.
   */
  object: RegistryObject;
}

export interface Watch {
  stop(): void;
}

/**
 * The objects of one kind a watcher holds: each one's resourceVersion by name (none for a deleted
 * one). A watch given it tells ADDED from MODIFIED, names what a relist after compaction finds
 * gone, and versions a deletion from it, where it kept a map by name of its own (~45 B an object).
 */
export interface HeldVersions {
  version(name: string): number | undefined;
  names(): Iterable<string>;
}

export interface LeaseHandle { /** Stops renewing and deletes the lease now (clean shutdown). */ release(): Promise<void>; }

/** One server of the registry (an etcd member) as a client sees it. */
export interface RegistryMember {
  endpoint: string;
  healthy: boolean;
  /** Why it is not healthy. */
  error?: string;
}

/** What Registry.changedSince answers. */
export interface KindChanges {
  /** The store's revision the answer is as of. */
  revision: number;
  /** Objects of the kind there are (unreadable ones too). */
  count: number;
  /** Name -> resourceVersion of each object changed after `since` (every object without it). */
  versions: Map<string, number>;
}

export interface Registry {
  get(kind: Kind, name: string): Promise<RegistryObject | undefined>;
  list(kind: Kind): Promise<RegistryObject[]>;
  /** Fails with code ALREADY_EXISTS if the object exists. */
  create(obj: RegistryObject): Promise<RegistryObject>;
  /** Compare-and-swap on metadata.resourceVersion; fails with code CONFLICT if it moved, NOT_FOUND if gone. */
  update(obj: RegistryObject): Promise<RegistryObject>;
  /**
   * Atomic read-modify-write: fn sees the current object (or undefined) and returns the new one,
   * or undefined to leave it unchanged. Retried on conflict, so fn must be pure.
   */
  mutate(kind: Kind, name: string, fn: (cur: RegistryObject | undefined) => RegistryObject | undefined): Promise<RegistryObject | undefined>;
  /** Returns false if there was nothing to delete. */
  delete(kind: Kind, name: string): Promise<boolean>;
  /** The store's current revision. */
  revision(): Promise<number>;
  /**
   * Every object's name and resourceVersion, without the objects (where the backend can list keys
   * alone): a relist that fetches only what moved. Objects it cannot read are listed too.
   */
  versions?(kind: Kind): Promise<Map<string, number>>;
  /**
   * The names and resourceVersions of the objects of a kind that changed after revision `since`
   * (all of them when undefined), how many objects of the kind there are, and the revision the
   * answer is as of, in one consistent read: a relist of an unchanged kind reads a count and no
   * names (with the count, a cache tells whether anything went).
   */
  changedSince?(kind: Kind, since: number | undefined): Promise<KindChanges>;
  /**
   * Calls onEvent for every change after `sinceRevision` (0: from the start), in revision order,
   * never skipping one. kind undefined: all kinds. held (with a kind): what the caller holds of the
   * kind, kept up to date from the events and from lists it made at or after `sinceRevision`; the
   * watch then keeps no record of its own of what it delivered (a backend that needs one: etcd).
   */
  watch(kind: Kind | undefined, sinceRevision: number, onEvent: (ev: WatchEvent) => void, held?: HeldVersions): Watch;
  /** Liveness apart from the node object: keeps Lease/<name> (spec = holder fields plus renewTime, ttlSeconds) present while renewed about every ttlSeconds/3; once the holder stops renewing, it is gone (absent from get/list; a DELETED watch event where the backend can) within ttlSeconds. onLost is called when renewal has failed for longer than the TTL. */
  holdLease(name: string, ttlSeconds: number, holder: Record<string, unknown>, onLost?: (e: Error) => void): Promise<LeaseHandle>;
  /** Each server of a replicated backend (etcd: every endpoint), asked alone; absent for a single store. */
  members?(): Promise<RegistryMember[]>;
  /**
   * Makes every value overwritten at or before `revision` unreadable, so a store that keeps history
   * (etcd's MVCC) no longer hands out a replaced key (etcd: compaction at revision; a later call
   * with an older revision is a no-op). Absent where nothing keeps history.
   */
  forgetHistoryBefore?(revision: number): Promise<void>;
  /** Stored values that are not valid objects (skipped by list and watch), by key. */
  invalidObjects?(): { key: string; reason: string }[];
  close(): void;
}
