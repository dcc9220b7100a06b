#!/usr/bin/env node
// veil: the command-line entry. One file per command group under src/cli/; this file only dispatches.
import { isVeilError, errorMessage } from '../util/errors.js';
import { UsageError } from './flags.js';
import { nearest } from '../util/nearest.js';

type CommandGroup = { run(args: string[]): Promise<number> };

// Each group is loaded only when used, so a broken or slow group never slows the others.
const GROUPS: Record<string, { summary: string; load: () => Promise<CommandGroup> }> = {
  demo: { summary: 'Run the encryption tutorial for real on a local lab (main job)', load: () => import('./demo.js') },
  lab: { summary: 'Create and inspect the local lab cluster (network namespaces)', load: () => import('./lab.js') },
  cluster: { summary: 'The clusters this CLI knows (config file), and the current one', load: () => import('./cluster.js') },
  secret: { summary: 'Create, read, patch and delete secrets (kubectl subset)', load: () => import('./secret.js') },
  install: { summary: 'Turn on encryption: an agent on every node', load: () => import('./install.js') },
  uninstall: { summary: 'Turn encryption off and restore plaintext routing', load: () => import('./uninstall.js') },
  config: { summary: 'Show the agent configuration', load: () => import('./config.js') },
  agent: { summary: "Ask one node's agent: status, encrypt status, logs", load: () => import('./agent.js') },
  peer: { summary: 'Members that run no veil agent (kernel WireGuard / IPsec hosts) and their configs', load: () => import('./peer.js') },
  ipsec: { summary: "One node's IPsec SAs and selectors (ip xfrm style), SAs for Wireshark", load: () => import('./ipsec.js') },
  status: { summary: 'Agents, encryption and health problems of the whole cluster', load: () => import('./status.js') },
  encryption: { summary: 'Cluster-wide encryption status (and IPsec keys)', load: () => import('./encryption.js') },
  verify: { summary: 'Prove the pod traffic is encrypted on the wire (connectivity test)', load: () => import('./verify.js') },
  capture: { summary: "tcpdump on a node's underlay or tunnel device", load: () => import('./capture.js') },
  metrics: { summary: "A node agent's Prometheus metrics", load: () => import('./metrics.js') },
};

export function usage(): string {
  const lines = ['veil: transparent encryption for cluster networks (WireGuard, IPsec)', '', 'Usage: veil <command> [args] [-h]', '', 'Commands:'];
  for (const [name, g] of Object.entries(GROUPS)) lines.push(`  ${name.padEnd(12)} ${g.summary}`);
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const group = GROUPS[cmd];
  if (!group) {
    const near = nearest(cmd, Object.keys(GROUPS), 2);
    console.error(`veil: unknown command '${cmd}'.${near ? ` Did you mean 'veil ${near}'?` : ''} Run 'veil --help' for the list of commands.`);
    return 2;
  }
  try {
    return await (await group.load()).run(rest);
  } catch (e) {
    if (isVeilError(e)) {
      console.error(`veil ${cmd}: ${e.describe()}`);
      return e instanceof UsageError ? 2 : 1;
    }
    console.error(`veil ${cmd}: unexpected error: ${errorMessage(e)}`);
    if (process.env['VEIL_DEBUG']) console.error(e);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
