// Certificates for an etcd served over TLS on loopback, made with the openssl CLI: a CA, a server
// certificate for 127.0.0.1/localhost and a client certificate (etcd's --client-cert-auth wants one).
// EC P-256 keys: generated in milliseconds, and both etcd (Go) and gRPC (Node) accept them.
import { writeFileSync } from 'node:fs';
import { ensurePrivateDir } from '../util/private-files.js';
import { join } from 'node:path';
import { mustRun } from '../util/exec.js';

export interface CertPair {
  cert: string;
  key: string;
}

export interface EtcdCerts {
  /** The CA that signed the server and client certificates. */
  ca: string;
  server: CertPair;
  /** A client certificate (CN=veil) signed by the CA. */
  client: CertPair;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA in dir: <name>.crt and <name>.key. */
export function makeCa(dir: string, name: string): CertPair {
  ensurePrivateDir(dir);
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  mustRun(['openssl', 'req', '-x509', ...EC_KEY, '-keyout', pair.key, '-out', pair.cert, '-days', '7',
    '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return pair;
}

/** A certificate for cn signed by ca, with the given extensions (openssl x509v3 syntax). */
export function signCert(dir: string, name: string, cn: string, ca: CertPair, extensions: string[]): CertPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions.join('\n') + '\n');
  mustRun(['openssl', 'req', ...EC_KEY, '-keyout', pair.key, '-out', csr, '-subj', `/CN=${cn}`]);
  mustRun(['openssl', 'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
    '-out', pair.cert, '-days', '7', '-extfile', ext]);
  return pair;
}

/** CA, server certificate (IP SAN 127.0.0.1 plus any extra IPs) and client certificate in dir. */
export function makeEtcdCerts(dir: string, serverIps: string[] = []): EtcdCerts {
  const ca = makeCa(dir, 'veil-etcd-ca');
  const sans = ['IP:127.0.0.1', 'DNS:localhost', ...serverIps.filter((ip) => ip !== '127.0.0.1').map((ip) => `IP:${ip}`)];
  const server = signCert(dir, 'veil-etcd-server', 'veil-etcd-server', ca, [
    `subjectAltName=${sans.join(',')}`, 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth,clientAuth']);
  const client = signCert(dir, 'veil-etcd-client', 'veil', ca, [
    'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth']);
  return { ca: ca.cert, server, client };
}
