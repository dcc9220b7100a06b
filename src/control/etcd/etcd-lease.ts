// Liveness as an etcd lease: the Lease/<name> key is attached to a lease of ttlSeconds that this
// holder keeps alive about every ttlSeconds/3. When the holder dies, etcd revokes the lease and
// deletes the key itself (watchers get DELETED) within the TTL. The object is written once per
// lease grant, not per renewal: the keepalive is the heartbeat, so a heartbeat never wakes a watcher.
import type { Etcd3 } from 'etcd3';
import type { LeaseHandle, RegistryObject } from '../registry.js';
import { VeilError } from '../../util/errors.js';
import { encodeObject } from './object-codec.js';

export interface EtcdLeaseDeps {
  client: Etcd3;
  key: string;
  name: string;
  ttlSeconds: number;
  holder: Record<string, unknown>;
  onLost: ((e: Error) => void) | undefined;
  /** Turns an etcd failure into a VeilError. */
  explain: (e: unknown, doing: string) => Promise<VeilError>;
}

/**
 * After a failed renewal the next try comes this soon (jittered up to twice that; at most half a
 * renewal interval), not a renewal interval later. A keepalive goes to one member picked at random
 * and fails on a dead one; three failed renewals in a row spend the TTL, and after an etcd outage
 * the members come back one by one: a lease lapsed so, and its node's peers dropped it for 1.5 s.
 */
const RETRY_AFTER_FAILURE_MS = 1000;

export class EtcdLease implements LeaseHandle {
  private id = '0';
  private timer: NodeJS.Timeout | undefined;
  private lastRenewed = Date.now();
  private lostReported = false;
  private released = false;

  private constructor(private readonly d: EtcdLeaseDeps) {}

  /** Grants the lease, writes the object on it, and starts renewing. */
  static async hold(d: EtcdLeaseDeps): Promise<EtcdLease> {
    if (!Number.isInteger(d.ttlSeconds) || d.ttlSeconds < 2) {
      throw new VeilError('BAD_LEASE_TTL', `lease TTL ${d.ttlSeconds} s`, 'use a whole number of seconds, at least 2 (etcd rounds shorter TTLs up)');
    }
    const lease = new EtcdLease(d);
    try {
      await lease.grant();
    } catch (e) {
      throw await d.explain(e, `granting lease ${d.name}`);
    }
    lease.schedule(lease.intervalMs());
    return lease;
  }

  /** Stops renewing without deleting: etcd removes the object when the TTL runs out. */
  abandon(): void {
    this.released = true;
    clearTimeout(this.timer);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.abandon();
    try {
      await this.d.client.leaseClient.leaseRevoke({ ID: this.id }); // deletes the key with it
    } catch (e) {
      if (/not found/i.test((e as Error).message)) return; // expired already: the key went with it
      throw await this.d.explain(e, `releasing lease ${this.d.name}`);
    }
  }

  private async grant(): Promise<void> {
    const g = await this.d.client.leaseClient.leaseGrant({ TTL: this.d.ttlSeconds });
    const now = new Date().toISOString();
    const obj: RegistryObject = {
      kind: 'Lease',
      metadata: { name: this.d.name, creationTimestamp: now },
      spec: { ...this.d.holder, renewTime: now, ttlSeconds: this.d.ttlSeconds },
    };
    await this.d.client.kv.put({ key: Buffer.from(this.d.key), value: Buffer.from(encodeObject(obj)), lease: g.ID });
    this.id = g.ID;
    this.lastRenewed = Date.now();
  }

  private intervalMs(): number {
    return (this.d.ttlSeconds * 1000) / 3;
  }

  /** One renewal at a time: the next is scheduled when this one ends. */
  private schedule(ms: number): void {
    if (!this.released) this.timer = setTimeout(() => void this.renew(), ms);
  }

  private async renew(): Promise<void> {
    let failed = false;
    try {
      const ttl = await this.keepAliveWithFreshToken();
      if (this.released) return;
      if (ttl <= 0) await this.grant(); // expired while we could not reach etcd: hold it anew
      else this.lastRenewed = Date.now();
      this.lostReported = false;
    } catch (e) {
      failed = true;
      if (!this.lostReported && Date.now() - this.lastRenewed > this.d.ttlSeconds * 1000) {
        this.lostReported = true;
        const err = await this.d.explain(e, `renewing lease ${this.d.name}`);
        this.d.onLost?.(new VeilError('LEASE_LOST', `lease ${this.d.name} was not renewed for over ${this.d.ttlSeconds} s: ${err.message}`, err.hint));
      }
    } finally {
      this.schedule(failed ? Math.min(this.intervalMs() / 2, RETRY_AFTER_FAILURE_MS * (1 + Math.random())) : this.intervalMs());
    }
  }

  /**
   * A keepalive; if it fails, a unary call, which re-authenticates where the token went stale (etcd3
   * does that for unary calls, not for the keepalive stream; etcd forgets its tokens when it
   * restarts), and a keepalive once more (on a member picked anew).
   */
  private async keepAliveWithFreshToken(): Promise<number> {
    try {
      return await this.keepAliveOnce();
    } catch {
      await this.d.client.leaseClient.leaseTimeToLive({ ID: this.id }).catch(() => undefined);
      return this.keepAliveOnce();
    }
  }

  /** One keepalive on a short-lived stream; the lease's remaining TTL (0: it expired). */
  private async keepAliveOnce(): Promise<number> {
    const timeoutMs = Math.max(1000, (this.d.ttlSeconds * 1000) / 3);
    const stream = await this.d.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
    try {
      return await new Promise<number>((resolve, reject) => {
        stream.on('data', (res) => resolve(Number(res.TTL)));
        stream.on('error', reject);
        stream.on('end', () => reject(new Error('the keepalive stream ended')));
        stream.write({ ID: this.id });
      });
    } finally {
      stream.on('error', () => { /* cancelled below: expected */ });
      // Half-closed first: etcd3 takes an error on a stream still writable for a failed member and
      // closes all its clients of that member (the cancel's CANCELLED counted so), which made every
      // keepalive, every 5 s, build the next call's gRPC clients and DNS resolver anew.
      try { stream.end(); } catch { /* already closed */ }
      try { stream.cancel(); } catch { /* already closed */ }
    }
  }
}
