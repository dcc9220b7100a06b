// Liveness as a coordination.k8s.io/v1 Lease (as the kubelet's node heartbeat does it): the holder
// renews spec.renewTime every third of leaseDurationSeconds; a lease not renewed within its
// duration means its holder is gone. Renewal is an update guarded by resourceVersion, so two
// holders never both think they renewed. A failed renewal (a 409, a 5xx, a timeout) is tried again
// soon, backing off from RETRY_FIRST_MS up to the regular interval, as the kubelet's node lease
// controller does: waiting a whole third would let two failures in a row lapse a 15 s lease.
import type * as k8s from '@kubernetes/client-node';
import { apiError, apiStatusCode } from './kube-errors.js';

/** The first retry after a failed renewal; each further one waits twice as long, up to a third of the duration. */
export const RETRY_FIRST_MS = 200;

export interface LeaseHandle {
  /** Stops renewing and deletes the lease now. */
  release(): Promise<void>;
  /** Stops renewing: the lease lapses within its duration (a restarted holder takes it over first). */
  stop(): void;
}

export interface LeaseOptions {
  namespace: string;
  name: string;
  holderIdentity: string;
  durationSeconds: number;
  /** Called once renewal has failed for longer than the lease's duration. */
  onLost?: (e: Error) => void;
  /** Labels on the Lease (e.g. which component holds it). */
  labels?: Record<string, string>;
}

/** When a lease was last renewed, by its holder's clock (undefined: never). */
export function leaseRenewedAt(lease: Record<string, unknown>): number | undefined {
  const spec = lease['spec'] as { renewTime?: unknown } | undefined;
  const t = typeof spec?.renewTime === 'string' ? Date.parse(spec.renewTime) : spec?.renewTime instanceof Date ? spec.renewTime.getTime() : NaN;
  return Number.isFinite(t) ? t : undefined;
}

export function leaseDurationMs(lease: Record<string, unknown>): number {
  const d = (lease['spec'] as { leaseDurationSeconds?: unknown } | undefined)?.leaseDurationSeconds;
  return (typeof d === 'number' && d > 0 ? d : 15) * 1000;
}

export async function holdLease(kc: k8s.KubeConfig, o: LeaseOptions): Promise<LeaseHandle> {
  const lib = await import('@kubernetes/client-node'); // loaded by the holder only (see kubernetes-registry.ts)
  const api = kc.makeApiClient(lib.CoordinationV1Api);
  const { namespace, name } = o;
  let lastOk = Date.now();
  let lost = false;
  const renew = async (): Promise<void> => {
    const now = new lib.V1MicroTime();
    let cur: k8s.V1Lease | undefined;
    try {
      cur = await api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (apiStatusCode(e) !== 404) throw e;
    }
    const spec: k8s.V1LeaseSpec = { holderIdentity: o.holderIdentity, leaseDurationSeconds: o.durationSeconds, renewTime: now };
    if (!cur) {
      await api.createNamespacedLease({ namespace, body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace, labels: o.labels }, spec: { ...spec, acquireTime: now } } });
      return;
    }
    // A new holder (a restarted agent) takes the lease over: acquireTime marks it.
    const acquireTime = cur.spec?.holderIdentity === o.holderIdentity && cur.spec.acquireTime ? new lib.V1MicroTime(cur.spec.acquireTime) : now;
    const leaseTransitions = (cur.spec?.leaseTransitions ?? 0) + (cur.spec?.holderIdentity === o.holderIdentity ? 0 : 1);
    await api.replaceNamespacedLease({ name, namespace, body: { ...cur, spec: { ...cur.spec, ...spec, acquireTime, leaseTransitions } } });
  };
  try {
    await renew();
  } catch (e) {
    throw apiError(`cannot take the liveness lease ${namespace}/${name}`, e);
  }
  const intervalMs = Math.max(500, (o.durationSeconds * 1000) / 3);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let retryMs = RETRY_FIRST_MS;
  // One renewal at a time: the next is scheduled when the last has ended.
  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(tick, ms);
    timer.unref();
  };
  // A request the server never answers counts as failed once a regular interval has passed.
  const attempt = (): Promise<void> => new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`no answer from the API server within ${intervalMs} ms`)), intervalMs);
    renew().then(resolve, reject).finally(() => clearTimeout(deadline));
  });
  const tick = (): void => {
    attempt().then(() => {
      lastOk = Date.now();
      lost = false;
      retryMs = RETRY_FIRST_MS;
      schedule(intervalMs);
    }, (e) => {
      if (!lost && Date.now() - lastOk > o.durationSeconds * 1000) {
        lost = true;
        o.onLost?.(apiError(`cannot renew the liveness lease ${namespace}/${name}`, e));
      }
      schedule(retryMs);
      retryMs = Math.min(retryMs * 2, intervalMs);
    });
  };
  schedule(intervalMs);
  const halt = (): void => {
    stopped = true;
    clearTimeout(timer);
  };
  return {
    stop: halt,
    async release() {
      halt();
      try {
        await api.deleteNamespacedLease({ name, namespace });
      } catch (e) {
        if (apiStatusCode(e) !== 404) throw apiError(`cannot release the lease ${namespace}/${name}`, e);
      }
    },
  };
}
