// veil agent: run the node agent (internal, started by install) and ask one agent about itself.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry } from '../control/registry.js';
import { nodeReady } from '../lab/objects.js';
import { agentSocketPath, runAgent } from '../agent/agent.js';
import { AgentClient } from '../agent/agent-client.js';
import type { PublishedAgentStatus } from '../agent/api.js';
import { agentLogPath, agentPid, agentStartFailure, startAgent, stopAgent } from '../agent/installer.js';
import { VeilError } from '../util/errors.js';
import { printStructured } from './output.js';
import { formatEncryptStatus } from '../operator/encrypt-status-text.js';

const HELP = `Usage: veil agent <subcommand> [flags]

Subcommands:
  status NODE [-o json]            health and encryption of the agent on NODE
  encrypt status NODE [-o json]    the tunnel: interface, keys, peers / SAs, counters
  logs NODE [-f]                   the agent's structured log
  restart NODE                     stop and start the agent on NODE (keys and routes survive)
  run --node NODE [--wireguard-keylog FILE]
                                   run the agent in the foreground (install does this for you);
                                   the key log lets Wireshark decrypt a WireGuard capture

Examples:
  veil agent status kind-worker
  veil agent encrypt status kind-worker -o json
  veil agent logs kind-worker -f`;

async function knownNode(cluster: string, node: string | undefined): Promise<string> {
  if (!node) throw new VeilError('BAD_ARGS', 'which node?', "name one, e.g. 'veil agent status kind-worker'");
  const reg = openRegistry(cluster);
  try {
    const obj = await reg.get('Node', node);
    if (!obj) {
      const names = (await reg.list('Node')).map((n) => n.metadata.name);
      throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, names.length ? `nodes: ${names.join(', ')}` : "create the lab with 'veil lab up'");
    }
    return node;
  } finally {
    reg.close();
  }
}

const RESTART_TIMEOUT_MS = 30_000;

/** Waits until the agent with this pid reports ready; fails with the agent's own error if it exits. */
async function waitAgentReady(reg: Registry, cluster: string, node: string, pid: number): Promise<void> {
  const deadline = Date.now() + RESTART_TIMEOUT_MS;
  for (;;) {
    const obj = await reg.get('Node', node);
    if (obj && nodeReady(obj) && (obj.status?.['agent'] as Partial<PublishedAgentStatus> | undefined)?.pid === pid) return;
    const alive = agentPid(cluster, node) === pid;
    if (!alive || Date.now() > deadline) {
      const why = alive ? ' in time' : `: ${agentStartFailure(cluster, node, pid) ?? 'it exited'}`;
      throw new VeilError('AGENT_NOT_READY', `the agent on ${node} did not become ready${why}`, `see 'veil agent logs ${node}'`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: {
      node: { type: 'string' }, cluster: { type: 'string' }, output: { type: 'string', short: 'o' },
      follow: { type: 'boolean', short: 'f' }, 'wireguard-keylog': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !positionals.length) { console.log(HELP); return values.help ? 0 : 2; }
  const cluster = currentCluster(values.cluster);
  const [sub, ...rest] = positionals;
  switch (sub) {
    case 'run': {
      if (!values.node) throw new VeilError('BAD_ARGS', 'veil agent run needs --node NODE');
      return runAgent({ cluster, node: values.node, wireguardKeylog: values['wireguard-keylog'] });
    }
    case 'status': {
      const node = await knownNode(cluster, rest[0]);
      const h = await new AgentClient(agentSocketPath(cluster, node)).healthz();
      if (values.output) { printStructured(h, values.output); return 0; }
      console.log(`Node: ${h.node}`);
      console.log(`Agent: ${h.health.state} (pid ${h.pid}, up since ${h.startedAt})`);
      for (const c of h.health.checks) console.log(`  ${c.name}: ${c.state}${c.message && c.message !== 'OK' ? ` (${c.message})` : ''}`);
      console.log(`Encryption: ${h.encryption.mode}${h.encryption.detail ? ` ${h.encryption.detail}` : ''}`);
      return 0;
    }
    case 'encrypt': {
      if (rest[0] !== 'status') throw new VeilError('BAD_ARGS', `unknown subcommand 'agent encrypt ${rest[0] ?? ''}'`, "use 'veil agent encrypt status NODE'");
      const node = await knownNode(cluster, rest[1]);
      const st = await new AgentClient(agentSocketPath(cluster, node)).encryptStatus();
      if (values.output) { printStructured(st, values.output); return 0; }
      process.stdout.write(formatEncryptStatus(st));
      return 0;
    }
    case 'logs': {
      const node = await knownNode(cluster, rest[0]);
      const path = agentLogPath(cluster, node);
      if (!existsSync(path)) throw new VeilError('NO_LOG', `no agent log for ${node} yet`, "is veil installed? ('veil status')");
      if (!values.follow) { process.stdout.write(readFileSync(path, 'utf8')); return 0; }
      const tail = spawn('tail', ['-n', '+1', '-f', path], { stdio: 'inherit' });
      return new Promise((r) => tail.on('exit', (c) => r(c ?? 0)));
    }
    case 'restart': {
      const node = await knownNode(cluster, rest[0]);
      await stopAgent(cluster, node);
      const reg = openRegistry(cluster);
      try {
        const pid = startAgent(cluster, (await reg.get('Node', node))!);
        await waitAgentReady(reg, cluster, node, pid);
        console.log(`agent on ${node} restarted (pid ${pid})`);
      } finally {
        reg.close();
      }
      return 0;
    }
    case 'pid': {
      const node = await knownNode(cluster, rest[0]);
      const pid = agentPid(cluster, node);
      if (!pid) return 1;
      console.log(pid);
      return 0;
    }
    default:
      throw new VeilError('BAD_ARGS', `unknown subcommand 'agent ${sub}'`, "run 'veil agent -h'");
  }
}
