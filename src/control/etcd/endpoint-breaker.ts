// The per-endpoint circuit breaker handed to the etcd3 client: after 3 failures in a row an endpoint
// is skipped for 1 s (calls go to another one), then every call may try it again.
//
// Why not cockatiel's circuitBreaker (etcd3's default): in its half-open state every call waits for
// the one trial call. With etcd auth, a call whose token went stale (etcd restarted and forgot its
// tokens) is retried by etcd3 *inside* the trial, after a new login; that retry waits for the trial,
// which waits for the retry: a deadlock. Every later call to the endpoint then hangs for good: after
// an etcd restart, agents logged in with a password never renewed their lease again (seen on a lab
// with per-node etcd users; reproduced in test/control/etcd-security.test.ts). This breaker never
// makes a call wait.
import type { IPolicy } from 'cockatiel';
import { etcd3, faultPolicies } from './etcd3-lib.js';

const FAILURES_TO_OPEN = 3;
const OPEN_MS = 1000;

export function endpointBreaker(now: () => number = Date.now): IPolicy {
  const { BrokenCircuitError } = faultPolicies();
  const { isRecoverableError } = etcd3();
  let failures = 0;
  let openUntil = 0;
  const policy = {
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal: AbortSignal = new AbortController().signal): Promise<T> {
      if (failures >= FAILURES_TO_OPEN && now() < openUntil) throw new BrokenCircuitError();
      try {
        const result = await fn({ signal });
        failures = 0;
        return result;
      } catch (e) {
        if (isRecoverableError(e as Error)) {
          failures++;
          if (failures >= FAILURES_TO_OPEN) openUntil = now() + OPEN_MS;
        }
        throw e;
      }
    },
    onSuccess: () => ({ dispose: () => undefined }),
    onFailure: () => ({ dispose: () => undefined }),
  };
  return policy as unknown as IPolicy;
}
