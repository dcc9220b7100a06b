// Where a lab node's agent keeps its state and its local API socket (one directory per node).
// Apart from agent.ts so that the CLI and the lab can name them without loading the agent.
import { join } from 'node:path';
import { clusterDir } from '../util/paths.js';

export function nodeStateDir(cluster: string, node: string): string {
  return join(clusterDir(cluster), 'nodes', node);
}

export function agentSocketPath(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'agent.sock');
}
