// The client of an agent's local API (HTTP on the status socket in the node's state directory):
// what the CLI and the operator views use to ask one agent about itself. The shapes are api.ts's.
import { request } from 'node:http';
import { VeilError, errorMessage } from '../util/errors.js';
import { AGENT_API, type EncryptStatus, type Healthz, type IpsecSasReport } from './api.js';

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

/** One agent's API, typed: each call is one GET on its socket. */
export class AgentClient {
  constructor(private readonly socketPath: string, private readonly timeoutMs = 5000) {}

  private async json<T>(path: string): Promise<T> {
    return JSON.parse(await agentGet(this.socketPath, path, this.timeoutMs)) as T; // the agent's status server answers api.ts's shape for path
  }

  healthz(): Promise<Healthz> {
    return this.json<Healthz>(AGENT_API.healthz);
  }

  encryptStatus(): Promise<EncryptStatus> {
    return this.json<EncryptStatus>(AGENT_API.encrypt);
  }

  ipsecSas(showKeys = false): Promise<IpsecSasReport> {
    return this.json<IpsecSasReport>(`${AGENT_API.ipsecSas}${showKeys ? '?keys=1' : ''}`);
  }

  /** The Prometheus text exposition. */
  metricsText(): Promise<string> {
    return agentGet(this.socketPath, AGENT_API.metrics, this.timeoutMs);
  }
}
