// etcd failures as VeilErrors that say which problem it is and what to do. gRPC reports every
// connection failure alike ("UNAVAILABLE: No connection established"), so for those the endpoints
// are probed with a plain TCP/TLS handshake using the same files, which tells a wrong CA, a missing
// client certificate, http against https and a dead endpoint apart.
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { VeilError, isVeilError } from '../../util/errors.js';
import type { EtcdConnectionOptions } from './etcd-connection.js';
import { etcd3 } from './etcd3-lib.js';

/** Users made by `veil cluster node-user` (etcd-node-credentials.ts). */
export const NODE_USER_PREFIX = 'veil-node/';

const CHECK_CONFIG = "the cluster's registry settings are shown by 'veil cluster list'";

/** e as a VeilError; connection failures are diagnosed by probing the endpoints. */
export async function etcdError(e: unknown, opts: EtcdConnectionOptions, doing: string): Promise<VeilError> {
  if (isVeilError(e)) return e;
  const msg = (e as Error)?.message ?? String(e);
  const {
    EtcdAuthenticationFailedError, EtcdPermissionDeniedError, GRPCDeadlineExceededError, GRPCUnavailableError,
    GRPCCancelledError, EtcdError, GRPCGenericError,
  } = etcd3();
  if (e instanceof EtcdAuthenticationFailedError) {
    return new VeilError('ETCD_AUTH_FAILED', `etcd refused user '${opts.username}': wrong user name or password`,
      `check the password in ${opts.passwordFile ?? 'the cluster settings'} (an etcd admin resets it with 'etcdctl user passwd ${opts.username}')`);
  }
  if (/authentication is not enabled/.test(msg)) {
    return new VeilError('ETCD_AUTH_NOT_ENABLED', `a user name is set for etcd but etcd has auth disabled`, 'remove the user name and password file from the cluster settings, or enable auth in etcd');
  }
  if (e instanceof EtcdPermissionDeniedError || /permission denied/.test(msg)) {
    if (opts.username?.startsWith(NODE_USER_PREFIX)) {
      return new VeilError('ETCD_PERMISSION_DENIED', `etcd denied ${doing} to node user '${opts.username}': a node's etcd user may write only its own Node and Lease objects`,
        "write other objects with the cluster's admin credentials (veil cluster list shows them); if this node's own keys were refused, make its user again: veil cluster node-user NODE --password-file FILE");
    }
    return new VeilError('ETCD_PERMISSION_DENIED', `etcd denied ${doing} to user '${opts.username ?? '(client certificate CN)'}'`,
      "grant the user's role read/write on the veil/ prefix: etcdctl role grant-permission ROLE --prefix=true readwrite veil/");
  }
  if (e instanceof GRPCDeadlineExceededError) {
    return new VeilError('ETCD_TIMEOUT', `etcd did not answer ${doing} in time (${opts.endpoints.join(', ')})`, 'check that etcd has a leader (etcdctl endpoint status) and is not overloaded');
  }
  if (e instanceof GRPCUnavailableError || e instanceof GRPCCancelledError || /UNAVAILABLE|No connection established/.test(msg)) {
    return diagnoseConnection(opts, msg);
  }
  if (e instanceof EtcdError || e instanceof GRPCGenericError) {
    return new VeilError('ETCD_ERROR', `etcd failed ${doing}: ${msg}`, CHECK_CONFIG);
  }
  return new VeilError('ETCD_ERROR', `${doing} failed: ${msg}`, CHECK_CONFIG);
}

type Probe = { endpoint: string; problem: 'ok' | 'unreachable' | 'untrusted' | 'name' | 'client-cert-required' | 'client-cert-rejected' | 'serves-tls' | 'not-tls' | 'other'; detail: string };

/** Why no endpoint could be used, from a direct probe of each. */
export async function diagnoseConnection(opts: EtcdConnectionOptions, grpcMessage: string): Promise<VeilError> {
  const probes = await Promise.all(opts.endpoints.map((ep) => probe(ep, opts)));
  const list = (ps: Probe[]) => ps.map((p) => `${p.endpoint} (${p.detail})`).join(', ');
  const pick = (k: Probe['problem']) => probes.filter((p) => p.problem === k);
  let ps: Probe[];
  if ((ps = pick('untrusted')).length) {
    return new VeilError('ETCD_TLS_UNTRUSTED', `etcd's server certificate is not signed by the CA ${opts.ca ?? '(system CAs)'}: ${list(ps)}`,
      "set the cluster's CA file to the CA that signed etcd's server certificate (etcd --cert-file)");
  }
  if ((ps = pick('name')).length) {
    return new VeilError('ETCD_TLS_NAME_MISMATCH', `etcd's server certificate does not name the address used: ${list(ps)}`,
      "use an endpoint address that is in the certificate's subjectAltName, or reissue the certificate with it");
  }
  if ((ps = pick('client-cert-required')).length) {
    return new VeilError('ETCD_CLIENT_CERT_REQUIRED', `etcd requires a client certificate (it runs with --client-cert-auth) and none was given: ${list(ps)}`,
      "add a client certificate and key signed by etcd's --trusted-ca-file CA: veil cluster add NAME --cert FILE --key FILE ...");
  }
  if ((ps = pick('client-cert-rejected')).length) {
    return new VeilError('ETCD_CLIENT_CERT_REJECTED', `etcd rejected the client certificate ${opts.cert}: ${list(ps)}`,
      "use a client certificate signed by the CA etcd trusts (its --trusted-ca-file), valid now, with extendedKeyUsage clientAuth");
  }
  if ((ps = pick('serves-tls')).length) {
    return new VeilError('ETCD_ENDPOINT_NEEDS_HTTPS', `etcd serves TLS but the endpoints are http://: ${list(ps)}`, 'write the endpoints as https://HOST:PORT and give the CA file');
  }
  if ((ps = pick('not-tls')).length) {
    return new VeilError('ETCD_ENDPOINT_NOT_TLS', `the endpoints are https:// but etcd there does not speak TLS: ${list(ps)}`, 'write the endpoints as http://HOST:PORT, or run etcd with --cert-file/--key-file');
  }
  if (pick('unreachable').length === probes.length) {
    return new VeilError('ETCD_UNREACHABLE', `no etcd endpoint is reachable: ${list(probes)}`,
      `check that etcd is running there and that the endpoints are right (${CHECK_CONFIG})`);
  }
  return new VeilError('ETCD_UNAVAILABLE', `etcd is unavailable (${grpcMessage}); endpoints: ${list(probes)}`, 'check etcd\'s health: etcdctl endpoint health');
}

const PROBE_MS = 3000;

async function probe(endpoint: string, opts: EtcdConnectionOptions): Promise<Probe> {
  const url = new URL(endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port);
  const tcp = await tcpProbe(host, port);
  if (tcp) return { endpoint, problem: 'unreachable', detail: tcp };
  if (url.protocol === 'http:') {
    const t = await tlsProbe(host, port, { rejectUnauthorized: false });
    return t.problem === 'not-tls' || t.problem === 'other' ? { endpoint, problem: 'ok', detail: 'reachable' } : { endpoint, problem: 'serves-tls', detail: 'answers a TLS handshake' };
  }
  let ca: Buffer | undefined, cert: Buffer | undefined, key: Buffer | undefined;
  try {
    ca = opts.ca ? readFileSync(opts.ca) : undefined;
    cert = opts.cert ? readFileSync(opts.cert) : undefined;
    key = opts.key ? readFileSync(opts.key) : undefined;
  } catch (e) {
    return { endpoint, problem: 'other', detail: (e as Error).message };
  }
  const r = await tlsProbe(host, port, { ca, cert, key, rejectUnauthorized: true });
  // Go's TLS server answers a missing client certificate with the same alert as a bad one.
  if (r.problem === 'client-cert-rejected' && !cert) return { endpoint, problem: 'client-cert-required', detail: 'no client certificate' };
  return { endpoint, ...r };
}

function tcpProbe(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const timer = setTimeout(() => { s.destroy(); resolve(`no answer within ${PROBE_MS / 1000} s`); }, PROBE_MS);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(undefined); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(e.code === 'ECONNREFUSED' ? 'connection refused' : e.code ?? e.message); });
  });
}

/**
 * A TLS handshake with ALPN h2, then the HTTP/2 preface: with TLS 1.3 a server that requires a
 * client certificate says so only after the client's side of the handshake is done.
 */
function tlsProbe(host: string, port: number, o: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean }): Promise<{ problem: Probe['problem']; detail: string }> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { problem: Probe['problem']; detail: string }) => { if (!done) { done = true; clearTimeout(timer); s.destroy(); resolve(r); } };
    const servername = /^[\d.]+$|:/.test(host) ? undefined : host;
    const s = tlsConnect({ host, port, ca: o.ca, cert: o.cert, key: o.key, rejectUnauthorized: o.rejectUnauthorized, ALPNProtocols: ['h2'], ...(servername ? { servername } : {}) });
    const timer = setTimeout(() => finish({ problem: 'other', detail: 'TLS handshake timed out' }), PROBE_MS);
    s.once('secureConnect', () => {
      s.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00');
      s.once('data', () => finish({ problem: 'ok', detail: 'TLS handshake and HTTP/2 preface accepted' }));
    });
    s.once('close', () => finish({ problem: 'other', detail: 'the connection was closed' }));
    s.once('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? '';
      const text = `${code} ${e.message}`;
      if (/CERTIFICATE_REQUIRED|certificate required/i.test(text)) finish({ problem: 'client-cert-required', detail: 'no client certificate' });
      else if (/ALERT_BAD_CERTIFICATE|ALERT_UNKNOWN_CA|bad certificate|unknown ca|CERTIFICATE_UNKNOWN/i.test(text)) finish({ problem: 'client-cert-rejected', detail: alertName(e.message) });
      else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') finish({ problem: 'name', detail: e.message });
      else if (/UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE/.test(code)) finish({ problem: 'untrusted', detail: code });
      else if (/WRONG_VERSION_NUMBER|wrong version number|EPROTO|packet length too long/i.test(text)) finish({ problem: 'not-tls', detail: 'no TLS answer' });
      else finish({ problem: 'other', detail: text.trim() });
    });
  });
}

/** "…:SSL alert number 42" and friends, shortened to the alert's name. */
function alertName(message: string): string {
  const m = /alert ([a-z ]+?)(?::|$)/i.exec(message);
  return m ? `TLS alert: ${m[1]}` : message.split('\n')[0]!;
}
