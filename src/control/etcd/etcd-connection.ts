// How veil reaches an etcd cluster: endpoints, TLS files, user and password file.
//
// Client library: `etcd3` (npm, on @grpc/grpc-js): etcd's own v3 gRPC protos, kept current with
// etcd 3.4/3.5, pure JavaScript on Node 20 (no native gRPC build), with endpoint failover (calls go
// to another endpoint when one is unavailable), TLS and password auth built in. veil uses its raw
// KV/Watch/Lease RPCs and keeps watch resumption and leases in its own hands (etcd-watch.ts,
// etcd-lease.ts): the library's own watcher moves its resume point to the header revision, which
// can skip events when a stream breaks during catch-up.
import { readFileSync } from 'node:fs';
import type { Etcd3, IOptions } from 'etcd3';
import { etcd3, faultPolicies } from './etcd3-lib.js';
import { endpointBreaker } from './endpoint-breaker.js';
import { VeilError } from '../../util/errors.js';

export interface EtcdConnectionOptions {
  /** Client URLs, http://host:port or https://host:port; calls fail over between them. */
  endpoints: string[];
  /** PEM file of the CA that signed etcd's server certificate (https endpoints). */
  ca?: string;
  /** PEM files of a client certificate and its key (etcd run with --client-cert-auth). */
  cert?: string;
  key?: string;
  /** etcd user (etcd auth enabled); its password is read from passwordFile, or given as password. */
  username?: string;
  passwordFile?: string;
  password?: string;
  /** Deadline of every unary call (ms, default 5000). */
  callTimeoutMs?: number;
}

const ENDPOINT_RE = /^(https?):\/\/[^/\s]+:\d+\/?$/;
/** A unix socket, e.g. the lab's etcd socket: gRPC dials unix:///abs/path itself (etcd3 passes it through). */
const UNIX_ENDPOINT_RE = /^unix:\/\/\/\S+$/;

export function checkEndpoints(endpoints: string[]): void {
  if (endpoints.length === 0) throw new VeilError('ETCD_NO_ENDPOINTS', 'no etcd endpoints given', 'give one or more, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379');
  for (const e of endpoints) {
    if (!ENDPOINT_RE.test(e) && !UNIX_ENDPOINT_RE.test(e)) throw new VeilError('ETCD_BAD_ENDPOINT', `invalid etcd endpoint '${e}'`, 'write it as http://HOST:PORT, https://HOST:PORT or unix:///ABSOLUTE/PATH');
  }
  const schemes = new Set(endpoints.map((e) => e.split(':')[0]).map((s) => (s === 'unix' ? 'http' : s)));
  if (schemes.size > 1) throw new VeilError('ETCD_BAD_ENDPOINT', `etcd endpoints mix http and https (${endpoints.join(', ')})`, 'use https for all of them (or http for all)');
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new VeilError('ETCD_FILE_UNREADABLE', `cannot read the etcd ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, `check the path in the cluster's registry settings ('veil cluster list')`);
  }
}

/** The password: given, or the first line of passwordFile. */
export function readPassword(opts: EtcdConnectionOptions): string | undefined {
  if (opts.password !== undefined) return opts.password;
  if (opts.passwordFile === undefined) return undefined;
  return readPem('password', opts.passwordFile).toString('utf8').split('\n')[0]!.trimEnd();
}

/** The largest answer the client takes from etcd (values over MAX_OBJECT_BYTES are then refused unread). */
export const MAX_RECEIVE_BYTES = 100 * 1024 * 1024;

/** A client for these settings. It connects lazily: nothing is dialled before the first call. */
export function connectEtcd(opts: EtcdConnectionOptions): Etcd3 {
  checkEndpoints(opts.endpoints);
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new VeilError('ETCD_CERT_WITHOUT_KEY', 'an etcd client certificate needs both cert and key', 'give both files (or neither)');
  }
  const tls = opts.endpoints[0]!.startsWith('https:');
  if (!tls && (opts.ca || opts.cert)) {
    throw new VeilError('ETCD_TLS_FILES_WITHOUT_HTTPS', 'TLS files are set but the etcd endpoints are http://', 'write the endpoints as https://HOST:PORT');
  }
  const timeout = opts.callTimeoutMs ?? 5000;
  const options: IOptions = {
    hosts: opts.endpoints,
    // A unary call never hangs; streams (watch, keepalive) live on and are watched by keepalive pings.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    dialTimeout: timeout,
    grpcOptions: {
      'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000, 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 2_000,
      // A list page (64 values) or a batch of watch events of etcd's largest values: gRPC's 4 MiB
      // default would refuse a few oversized values that anyone with write access can put.
      'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    },
    faultHandling: faultHandling(),
  };
  if (tls && (opts.ca || opts.cert)) {
    options.credentials = {
      rootCertificate: opts.ca ? readPem('CA', opts.ca) : (undefined as unknown as Buffer), // undefined: the system's CAs
      ...(opts.cert ? { certChain: readPem('client certificate', opts.cert), privateKey: readPem('client key', opts.key!) } : {}),
    };
  }
  const password = readPassword(opts);
  if (opts.username !== undefined) {
    if (password === undefined) throw new VeilError('ETCD_NO_PASSWORD', `etcd user '${opts.username}' has no password`, 'give a password file');
    options.auth = { username: opts.username, password };
  }
  return new (etcd3().Etcd3)(options);
}

/**
 * etcd refused a call because the auth store changed between the call's check and its apply (a
 * user or role was added meanwhile, or the member that took the call had not yet applied the last
 * auth change): nothing was applied, and the same call again succeeds. etcd's own Go client retries
 * it; etcd3 (npm) only retries an invalid token.
 */
export function isOldAuthRevision(e: unknown): boolean {
  return /revision of auth store is old/.test((e as Error)?.message ?? '');
}

/** The errors a call is retried on (up to 3 times after it failed): etcd3's recoverable ones, and an old auth revision. */
export function isRetriedEtcdError(e: Error): boolean {
  return etcd3().isRecoverableError(e) || isOldAuthRevision(e);
}

/**
 * etcd3's defaults, but an endpoint that failed 3 times in a row is skipped for 1 s rather than 5
 * (with one endpoint, or all of them down a moment, the client would otherwise refuse every call
 * for 5 s after etcd came back), by a breaker that never makes a call wait (endpoint-breaker.ts),
 * and a call refused for an old auth revision is made again (isOldAuthRevision).
 */
export function faultHandling(): NonNullable<IOptions['faultHandling']> {
  const { handleWhen, retry } = faultPolicies();
  return {
    host: () => endpointBreaker(),
    global: retry(handleWhen(isRetriedEtcdError), { maxAttempts: 3 }),
  };
}
