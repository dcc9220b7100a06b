// The agent API's TLS identity: a self-signed certificate made once per node and kept in its state
// directory (the key 0600), so that its SHA-256 fingerprint, published in the registry, stays the
// same across restarts and a client can pin exactly that certificate. @peculiar/x509 over Node's
// WebCrypto makes it in-process (an ECDSA P-256 key in milliseconds, no openssl child process, no
// pure-JS RSA key generation); it needs the Reflect metadata polyfill its dependency injection uses.
import { X509Certificate, webcrypto } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VeilError, errorMessage } from '../util/errors.js';

export const API_KEY_FILE = 'api-key.pem';
export const API_CERT_FILE = 'api-cert.pem';

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const VALID_YEARS = 10;

export interface ApiCertificate {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the DER certificate, as Node prints it (AB:CD:...). */
  fingerprint256: string;
}

/** Two spellings of one fingerprint compare equal (case, colons). */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/:/g, '').toUpperCase();
  return norm(a) === norm(b);
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

async function createCertificate(commonName: string, ip: string): Promise<{ keyPem: string; certPem: string }> {
  // Loaded only to make a certificate (once per node): clients that only check one never need it.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000); // a client's clock a little behind still accepts it
  const notAfter = new Date(notBefore.getTime() + VALID_YEARS * 365 * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${commonName}`, notBefore, notAfter, keys, signingAlgorithm: ALGORITHM,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: ip }])],
  });
  return { keyPem: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), certPem: cert.toString('pem') };
}

/** The node's API certificate: loaded from stateDir, or made and stored there the first time. */
export async function loadOrCreateApiCertificate(stateDir: string, nodeName: string, ip: string): Promise<ApiCertificate> {
  const keyFile = join(stateDir, API_KEY_FILE);
  const certFile = join(stateDir, API_CERT_FILE);
  let keyPem: string, certPem: string;
  if (existsSync(keyFile) && existsSync(certFile)) {
    keyPem = readFileSync(keyFile, 'utf8');
    certPem = readFileSync(certFile, 'utf8');
  } else {
    ({ keyPem, certPem } = await createCertificate(`veil-agent ${nodeName}`, ip));
    // key first and each file whole (write, then rename): a crash leaves no certificate without its key
    writeFileSync(`${keyFile}.tmp`, keyPem, { mode: 0o600 });
    renameSync(`${keyFile}.tmp`, keyFile);
    writeFileSync(`${certFile}.tmp`, certPem, { mode: 0o644 });
    renameSync(`${certFile}.tmp`, certFile);
  }
  try {
    return { keyPem, certPem, fingerprint256: new X509Certificate(certPem).fingerprint256 };
  } catch (e) {
    throw new VeilError('BAD_API_CERT', `the agent API certificate ${certFile} is unreadable: ${errorMessage(e)}`,
      `delete ${certFile} and ${keyFile}; the agent makes a new pair at its next start (clients then pin the new one)`);
  }
}
