// The agent's local API: HTTP on a unix socket in the node's state directory (reachable from the
// host whatever network namespace the agent runs in). Read-only: the paths and shapes of api.ts;
// its client is agent-client.ts. The socket is root's alone (0600): /ipsec/sas?keys=1 hands out
// key material. The same answers go over the network through api-server.ts (HTTPS, a token).
import { createServer, type Server, type ServerResponse } from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import { prometheusContentType } from 'prom-client';
import { VeilError, errorMessage } from '../util/errors.js';
import { veilVersion } from '../util/version.js';
import type { Agent } from './agent.js';
import type { IpsecMode } from './ipsec-mode.js';
import type { Tunnel } from './tunnel.js';
import { AGENT_API, type Healthz, type IpsecSasReport } from './api.js';

/** One answer of the API: its content type and body. */
export interface ApiAnswer {
  type: string;
  body: string;
}

/** Writes an answer, or the error it failed with as JSON (500), to res. */
export function sendAnswer(res: ServerResponse, answer: Promise<ApiAnswer>): void {
  void answer.then(
    ({ type, body }) => { res.writeHead(200, { 'content-type': type }); res.end(body); },
    (e) => { res.writeHead(500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: errorMessage(e) })); },
  );
}

export class StatusServer {
  private server?: Server;

  constructor(private readonly socketPath: string, private readonly agent: Agent) {}

  async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    this.server = createServer((req, res) => sendAnswer(res, this.answer(req.url ?? '/')));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
  }

  /** The answer to GET url (also what the network API serves once the caller is authenticated). */
  async answer(url: string): Promise<ApiAnswer> {
    const [path, query] = url.split('?');
    const json = (value: object) => ({ type: 'application/json', body: JSON.stringify(value) });
    switch (path) {
      case AGENT_API.metrics: return { type: prometheusContentType, body: await this.agent.metrics() };
      case AGENT_API.encrypt: return json(await this.agent.encryptStatus());
      case AGENT_API.ipsecSas: {
        const q = new URLSearchParams(query);
        return json(await this.ipsecSas(q.get('keys') === '1', q.get('peer') ?? undefined));
      }
      case AGENT_API.healthz: return json(this.healthz());
      case AGENT_API.memory: return json(await this.agent.memory(new URLSearchParams(query).get('collect') === '1'));
      default: throw new VeilError('NOT_FOUND', `no such path ${path}`);
    }
  }

  private healthz(): Healthz {
    return {
      node: this.agent.node?.name ?? '', pid: process.pid, version: veilVersion(), startedAt: this.agent.startedAt.toISOString(),
      health: { state: this.agent.health.state(), checks: this.agent.health.list() },
      encryption: this.agent.encryptionSummary() ?? { mode: 'Disabled' },
      nodeEncryption: this.agent.settings?.['encryption.nodeEncryption'],
    };
  }

  /** The SAs and peers of the ESP engine (with key material if asked), and this node's addresses. */
  private async ipsecSas(showKeys: boolean, peer?: string): Promise<IpsecSasReport> {
    const mode = this.agent.encryption;
    if (mode?.type !== 'ipsec') throw new VeilError('NOT_IPSEC', `this agent runs ${this.agent.encryptionSummary()?.mode ?? 'no'} encryption, not IPsec`);
    // type 'ipsec': the IPsec mode over an ESP tunnel
    const st = await (mode as IpsecMode).engineStatus(this.agent.mustTunnel() as Tunnel<'esp'>, showKeys, peer);
    const node = this.agent.node!;
    return { node: node.name, internalIP: node.internalIPs[0]!, podCIDR: node.podCIDRs[0]!, sas: st.sas, peers: st.peers, peerCount: st.peerCount, aeadContexts: st.aeadContexts };
  }


  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.socketPath, { force: true });
  }
}
