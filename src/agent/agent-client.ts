// The client of an agent's API: what the CLI and the operator views use to ask one agent about
// itself. Two ways to it: the status socket in the node's state directory when this machine has it
// (the lab), else HTTPS to the address the agent published, pinning the certificate fingerprint it
// published and sending the cluster's token (real hosts). VEIL_AGENT_TRANSPORT=socket|network
// forces one. The shapes are api.ts's.
import { existsSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { connect, type TLSSocket } from 'node:tls';
import { isLabCluster, labNetnsPrefix, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { currentNamedNetns } from '../util/netns.js';
import { agentSocketPath } from './state-paths.js';
import { sameFingerprint } from './api-certificate.js';
import { API_TOKEN_SECRET, readApiToken } from './api-token.js';
import { AGENT_API, type EncryptStatus, type Healthz, type IpsecSasReport, type PublishedAgentStatus } from './api.js';

/** Where one agent answers. */
export type AgentEndpoint =
  | { kind: 'socket'; socketPath: string }
  | { kind: 'network'; node: string; url: string; fingerprint256: string; token: string };

export type AgentTransport = 'auto' | 'socket' | 'network';
export const AGENT_TRANSPORT_ENV = 'VEIL_AGENT_TRANSPORT';

export function agentTransport(env: NodeJS.ProcessEnv = process.env): AgentTransport {
  const t = env[AGENT_TRANSPORT_ENV] || 'auto';
  if (t !== 'auto' && t !== 'socket' && t !== 'network') {
    throw new VeilError('BAD_TRANSPORT', `${AGENT_TRANSPORT_ENV}=${t} is not a transport`, 'use auto (the default), socket or network');
  }
  return t;
}

function unreachable(where: string, e: unknown, hint: string): VeilError {
  return new VeilError('AGENT_UNREACHABLE', `cannot reach the agent at ${where} (${errorMessage(e)})`, hint);
}

function readBody(res: IncomingMessage, where: string, resolve: (body: string) => void, reject: (e: Error) => void): void {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => { body += c; });
  res.on('end', () => {
    if (res.statusCode === 200) resolve(body);
    else if (res.statusCode === 401) {
      reject(new VeilError('AGENT_UNAUTHORIZED', `the agent at ${where} refused the API token (401: missing or wrong)`,
        `the token is the registry secret ${API_TOKEN_SECRET}: re-run 'veil install' to create it if it is gone, or check that your registry credentials may read secrets`));
    } else reject(new VeilError('AGENT_ERROR', `the agent at ${where} answered ${res.statusCode}: ${body}`));
  });
}

/**
 * A connection of its own per request (agent: false), never one kept alive from the last: a kept one
 * may belong to an agent that has since stopped (`veil agent restart` then a read, in one process),
 * and its first write fails with EPIPE although the new agent answers at the same path.
 */
function socketGet(socketPath: string, path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs, agent: false }, (res) => readBody(res, socketPath, resolve, reject));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => reject(unreachable(socketPath, e, "is veil installed? check 'veil status' and 'veil agent logs NODE'")));
    req.end();
  });
}

/**
 * GET over TLS, pinned: the connection is made first and its certificate compared with the
 * published fingerprint, and only then is the request (with the token) written to it, so a token
 * never reaches a server that is not the agent.
 */
function networkGet(ep: Extract<AgentEndpoint, { kind: 'network' }>, path: string, timeoutMs: number): Promise<string> {
  const url = new URL(ep.url);
  const where = `${ep.url} (node ${ep.node})`;
  return new Promise((resolve, reject) => {
    let socket: TLSSocket | undefined;
    const fail = (e: Error) => { clearTimeout(timer); socket?.destroy(); reject(e); };
    const timer = setTimeout(() => fail(unreachable(where, new Error(`no answer within ${timeoutMs} ms`), checkReachability(url))), timeoutMs);
    socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), rejectUnauthorized: false });
    socket.on('error', (e) => fail(unreachable(where, e, checkReachability(url))));
    socket.once('secureConnect', () => {
      const presented = socket!.getPeerCertificate().fingerprint256 ?? '';
      if (!sameFingerprint(presented, ep.fingerprint256)) {
        fail(new VeilError('AGENT_CERT_MISMATCH',
          `the agent at ${where} presented certificate SHA-256 ${presented || '(none)'}, but node ${ep.node} published ${ep.fingerprint256}; nothing was sent to it`,
          `if the node's agent was reinstalled or its state directory wiped, wait for it to publish its new certificate (a few seconds after it starts) and retry; otherwise something else answers at that address: find out what before trusting it`));
        return;
      }
      const req = request({
        createConnection: () => socket!, path, method: 'GET',
        headers: { host: url.host, authorization: `Bearer ${ep.token}` },
      }, (res) => readBody(res, where, (b) => { clearTimeout(timer); socket!.end(); resolve(b); }, fail));
      req.on('error', (e) => fail(unreachable(where, e, checkReachability(url))));
      req.end();
    });
  });
}

function checkReachability(url: URL): string {
  return `check that the agent runs ('veil status'), that this machine has a route to ${url.hostname} and that TCP port ${url.port} (setting agent.apiPort) is open between them`;
}

/** GET path from the agent at endpoint. Errors say which: unreachable, certificate mismatch, or token refused. */
export function agentGet(endpoint: AgentEndpoint, path: string, timeoutMs = 5000): Promise<string> {
  return endpoint.kind === 'socket' ? socketGet(endpoint.socketPath, path, timeoutMs) : networkGet(endpoint, path, timeoutMs);
}

/** The network endpoint a node's agent published (address and certificate), with the cluster's token. */
export async function publishedEndpoint(reg: Registry, node: string): Promise<AgentEndpoint> {
  const obj = await reg.get('Node', node);
  if (!obj) throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, "list the nodes with 'veil status'");
  const agent = obj.status?.['agent'] as Partial<PublishedAgentStatus> | undefined; // written by Agent.publish
  if (!agent?.apiAddress || !agent.apiFingerprint) {
    throw new VeilError('AGENT_NO_API', `node ${node}'s agent has published no API address`,
      `is its agent running, and with a veil that serves the API on the network? check 'veil status' and its log ('veil agent logs ${node}')`);
  }
  const token = await readApiToken(reg);
  if (!token) {
    throw new VeilError('AGENT_NO_TOKEN', `cannot read the agent API token (registry secret ${API_TOKEN_SECRET})`,
      "re-run 'veil install' to create it, or check that your registry credentials may read secrets");
  }
  return { kind: 'network', node, url: agent.apiAddress, fingerprint256: agent.apiFingerprint, token };
}

/** How to reach node's agent from here: its socket if this machine has it (and the transport allows), else the network. */
export async function agentEndpoint(cluster: string, node: string, reg?: Registry): Promise<AgentEndpoint> {
  const transport = agentTransport();
  const socketPath = agentSocketPath(cluster, node);
  if (transport === 'socket' || (transport === 'auto' && existsSync(socketPath))) return { kind: 'socket', socketPath };
  // A lab's addresses live only in its namespaces: from the host's own namespace they would be
  // routed off this machine, so nothing is sent there.
  if (isLabCluster(cluster) && !currentNamedNetns()?.startsWith(labNetnsPrefix(cluster))) {
    throw new VeilError('AGENT_UNREACHABLE', `no status socket for node ${node}'s agent (${socketPath}), and the lab's network is reachable only from its own namespaces`,
      `is the agent running? see 'veil status'; start it with 'veil agent restart ${node}', or ask from inside the lab: veil lab node-exec NODE -- veil …`);
  }
  if (reg) return publishedEndpoint(reg, node);
  const own = openRegistry(cluster);
  try {
    return await publishedEndpoint(own, node);
  } finally {
    own.close();
  }
}

/** One agent's API, typed: each call is one GET. */
export class AgentClient {
  constructor(private readonly endpoint: AgentEndpoint, private readonly timeoutMs = 5000) {}

  /** The client of node's agent, reached as agentEndpoint decides. */
  static async connect(cluster: string, node: string, opts: { registry?: Registry; timeoutMs?: number } = {}): Promise<AgentClient> {
    return new AgentClient(await agentEndpoint(cluster, node, opts.registry), opts.timeoutMs);
  }

  private async json<T>(path: string): Promise<T> {
    return JSON.parse(await agentGet(this.endpoint, path, this.timeoutMs)) as T; // the agent's status server answers api.ts's shape for path
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
    return agentGet(this.endpoint, AGENT_API.metrics, this.timeoutMs);
  }
}
