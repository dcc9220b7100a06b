// The agent API on the network: the status socket's read-only answers over HTTPS on the node IP
// (agent.apiPort), for a CLI on another machine. The server proves itself with the node's pinned
// certificate (api-certificate.ts); the caller with the cluster's bearer token (api-token.ts).
// Refusals are counted by reason (veil_agent_api_refused_total) and logged, at most one line per
// LOG_EVERY_MS so that a flood of bad requests cannot fill the agent's log.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import { closeServer, listenOn } from '../util/http-listen.js';
import type { ApiCertificate } from './api-certificate.js';
import { bearerMatches } from './api-token.js';
import { sendAnswer, type ApiAnswer } from './status-server.js';

export type ApiRefusal = 'no_token' | 'wrong_token' | 'token_unavailable' | 'not_get';
export const API_REFUSALS: readonly ApiRefusal[] = ['no_token', 'wrong_token', 'token_unavailable', 'not_get'];

const LOG_EVERY_MS = 10_000;

export interface ApiServerOptions {
  host: string;
  port: number;
  certificate: ApiCertificate;
  /** The token callers must present; undefined when it cannot be had (every call is refused). */
  token: () => Promise<string | undefined>;
  answer: (url: string) => Promise<ApiAnswer>;
  log: Logger;
}

export class ApiServer {
  private server?: Server;
  /** Refused requests by reason, since start. */
  readonly refused: Record<ApiRefusal, number> = { no_token: 0, wrong_token: 0, token_unavailable: 0, not_get: 0 };
  private lastLog = 0;
  private unlogged = 0;

  constructor(private readonly opts: ApiServerOptions) {}

  /** https://HOST:PORT (the bound port once listening: port 0 picks a free one). */
  get address(): string {
    const bound = this.server?.address();
    const port = bound && typeof bound === 'object' ? bound.port : this.opts.port;
    return `https://${this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host}:${port}`;
  }

  async listen(): Promise<void> {
    const server = createServer({ key: this.opts.certificate.keyPem, cert: this.opts.certificate.certPem },
      (req, res) => { void this.handle(req, res); });
    await listenOn(server, this.opts.port, this.opts.host);
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let expected: string | undefined;
    let tokenError: string | undefined;
    try {
      expected = await this.opts.token();
    } catch (e) {
      tokenError = errorMessage(e); // logged with the refusal, so a registry outage cannot flood the log either
    }
    const header = req.headers.authorization;
    const refusal: ApiRefusal | undefined = !expected ? 'token_unavailable'
      : !header ? 'no_token'
      : !bearerMatches(header, expected) ? 'wrong_token'
      : req.method !== 'GET' ? 'not_get' : undefined;
    if (refusal) {
      this.refuse(req, res, refusal, tokenError);
      return;
    }
    sendAnswer(res, this.opts.answer(req.url ?? '/'));
  }

  private refuse(req: IncomingMessage, res: ServerResponse, reason: ApiRefusal, tokenError?: string): void {
    this.refused[reason]++;
    const now = Date.now();
    if (now - this.lastLog >= LOG_EVERY_MS) {
      this.opts.log.warn('agent API: request refused', { reason, from: req.socket.remoteAddress, path: req.url, alsoRefusedSinceLastLine: this.unlogged, tokenError });
      this.lastLog = now;
      this.unlogged = 0;
    } else {
      this.unlogged++;
    }
    if (reason === 'not_get') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET' });
      res.end(JSON.stringify({ error: 'the agent API is read-only: GET only' }));
      return;
    }
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="veil-agent"' });
    res.end(JSON.stringify({ error: reason === 'token_unavailable' ? 'this agent cannot read its API token' : 'missing or wrong bearer token' }));
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    await closeServer(s);
  }
}
