// A test API server as a real cluster is reached: TLS with its own CA, the admin's bearer token, on
// loopback, and a kubeconfig for it (the set-up the stand-in tests share).
import { join } from 'node:path';
import { TestApiServer, type TestApiServerOptions } from './test-api-server.js';
import { makeApiServerCerts, TEST_TOKEN, writeKubeconfig } from './kubectl.js';

/** Certificates and the kubeconfig are written under dir. */
export async function startTlsApiServer(dir: string, opts: Omit<TestApiServerOptions, 'tls' | 'token'> = {}): Promise<{ server: TestApiServer; kubeconfig: string }> {
  const certs = makeApiServerCerts(dir);
  const server = new TestApiServer({ ...opts, tls: certs.server, token: TEST_TOKEN });
  const kubeconfig = writeKubeconfig(join(dir, 'kubeconfig'), await server.listen({ host: '127.0.0.1', port: 0 }), certs.ca);
  return { server, kubeconfig };
}
