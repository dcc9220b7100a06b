// The agent's local API: HTTP on a unix socket in the node's state directory (reachable from the
// host whatever network namespace the agent runs in). Read-only: /healthz, /encrypt, /metrics,
// /ipsec/sas[?keys=1]. The socket is root's alone (0600): /ipsec/sas?keys=1 hands out key material.
import { createServer, request, type Server } from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import { VeilError, errorMessage } from '../util/errors.js';
import type { Agent } from './agent.js';
import type { IpsecMode } from './ipsec-mode.js';

export class StatusServer {
  private server?: Server;

  constructor(private readonly socketPath: string, private readonly agent: Agent) {}

  async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    this.server = createServer((req, res) => {
      void this.handle(req.url ?? '/').then(
        ({ type, body }) => { res.writeHead(200, { 'content-type': type }); res.end(body); },
        (e) => { res.writeHead(500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: errorMessage(e) })); },
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
  }

  private async handle(url: string): Promise<{ type: string; body: string }> {
    const [path, query] = url.split('?');
    if (path === '/metrics') return { type: 'text/plain; version=0.0.4', body: await this.agent.metrics() };
    if (path === '/encrypt') return { type: 'application/json', body: JSON.stringify(await this.agent.encryption.encryptStatus()) };
    if (path === '/ipsec/sas') return { type: 'application/json', body: JSON.stringify(await this.ipsecSas(new URLSearchParams(query).get('keys') === '1')) };
    if (path === '/healthz') {
      const ctx = this.agent.context;
      const mode = this.agent.encryption;
      return {
        type: 'application/json',
        body: JSON.stringify({
          node: ctx.nodeName, pid: process.pid, startedAt: this.agent.startedAt.toISOString(),
          health: { state: this.agent.health.state(), checks: this.agent.health.list() },
          encryption: mode ? { mode: mode.mode, device: mode.device, detail: mode.statusDetail() } : { mode: 'Disabled' },
          nodeEncryption: ctx.settings['encryption.nodeEncryption'],
        }),
      };
    }
    throw new VeilError('NOT_FOUND', `no such path ${path}`);
  }

  /** The SAs and peers of the ESP engine (with key material if asked), and this node's addresses. */
  private async ipsecSas(showKeys: boolean): Promise<Record<string, unknown>> {
    const mode = this.agent.encryption;
    if (mode?.mode !== 'IPsec') throw new VeilError('NOT_IPSEC', `this agent runs ${mode?.mode ?? 'no'} encryption, not IPsec`);
    const st = await (mode as IpsecMode).engineStatus(showKeys);
    const ctx = this.agent.context;
    return { node: ctx.nodeName, internalIP: ctx.internalIP, podCIDR: ctx.podCIDR, sas: st.sas, peers: st.peers };
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.socketPath, { force: true });
  }
}

/** GET path from the agent listening on socketPath. Errors say the agent is not running. */
export function agentGet(socketPath: string, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => {
        if (res.statusCode === 200) resolve(body);
        else reject(new VeilError('AGENT_ERROR', `the agent answered ${res.statusCode}: ${body}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => reject(new VeilError('AGENT_UNREACHABLE', `cannot reach the agent (${errorMessage(e)})`,
      "is veil installed? check 'veil status' and 'veil agent logs NODE'")));
    req.end();
  });
}
