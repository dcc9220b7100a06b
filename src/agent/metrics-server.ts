// Prometheus metrics over HTTP on the node's address (agent.metricsPort, Cilium's 9962), for
// scrapers on the network; the same body as GET /metrics on the local status socket. The same port
// answers the kubelet's probes: /healthz (the agent runs) and /readyz (its datapath is up and no
// health check failed), 200 or 503 with the reason.
import { createServer, type Server } from 'node:http';
import { prometheusContentType } from 'prom-client';
import { errorMessage } from '../util/errors.js';
import { closeServer, listenOn } from '../util/http-listen.js';

export class MetricsServer {
  private server?: Server;

  constructor(private readonly host: string, private readonly port: number, private readonly render: () => Promise<string>,
    private readonly probe: (kind: 'healthz' | 'readyz') => { ok: boolean; detail: string } = () => ({ ok: true, detail: 'ok' })) {}

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && (path === '/healthz' || path === '/readyz')) {
        const r = this.probe(path.slice(1) as 'healthz' | 'readyz');
        res.writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(`${r.detail}\n`);
        return;
      }
      if (req.method !== 'GET' || (path !== '/metrics' && path !== '/')) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: try GET /metrics, /healthz or /readyz\n');
        return;
      }
      this.render().then(
        (body) => { res.writeHead(200, { 'content-type': prometheusContentType }); res.end(body); },
        (e) => { res.writeHead(500, { 'content-type': 'text/plain' }); res.end(`metrics failed: ${errorMessage(e)}\n`); },
      );
    });
    await listenOn(server, this.port, this.host);
    this.server = server;
  }

  get address(): string {
    return `http://${this.host}:${this.port}/metrics`;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    await closeServer(s);
  }
}
