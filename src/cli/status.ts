// veil status: the agents, the encryption and every problem, like `cilium status`.
import { currentCluster, openRegistry } from '../control/cluster.js';
import { parseDuration } from '../agent/settings.js';
import { clusterStatus } from '../operator/observe.js';
import { formatStatusReport, type StatusReport } from '../operator/cluster-status.js';
import { command, flagValue } from './flags.js';
import { printStructured } from './output.js';
import { ui } from './ui.js';

export const EXIT_NOT_INSTALLED = 3;

function exitCode(r: StatusReport): number {
  if (!r.installed) return EXIT_NOT_INSTALLED;
  return r.ok ? 0 : 1;
}

export const { run } = command({
  name: 'veil status',
  usage: ['veil status [--wait] [--wait-duration DUR] [-o json|yaml] [--cluster NAME]'],
  about: `Shows the agents (desired, ready, available), the encryption mode and how many nodes encrypt,
every health problem with its node and reason, and the version.`,
  flags: {
    wait: { type: 'boolean', help: 'wait until every agent is ready and healthy' },
    'wait-duration': { type: 'string', value: 'DUR', default: '2m', help: 'how long --wait waits (default 2m)' },
  },
  output: { choices: ['json', 'yaml'], help: 'json or yaml (for scripts)' },
  notes: `Exit codes:
  0  veil is installed and every agent is ready, available and healthy
  1  some agent is missing, not ready or unhealthy (the reasons are printed), or --wait timed out
  2  bad usage
  3  veil is not installed on the cluster`,
  examples: ['veil status', 'veil status --wait --wait-duration 1m', "veil status -o json | jq '.errors'"],
  async run({ values }) {
    const timeoutMs = flagValue(() => parseDuration(values['wait-duration']!));
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    try {
      let report = await clusterStatus(cluster, reg);
      if (values.wait) {
        const deadline = Date.now() + timeoutMs;
        let last = '';
        while (!report.ok && Date.now() < deadline) {
          const why = report.errors[0] ?? report.nodes.flatMap((n) => n.pending.map((reason) => ({ node: n.name, reason })))[0];
          const line = `${ui.wait} Waiting for veil: ${report.agents.available}/${report.nodes.length} agents available${why ? ` (${why.node}: ${why.reason})` : ''}`;
          if (line !== last) { process.stderr.write(line + '\n'); last = line; }
          await new Promise((r) => setTimeout(r, 500));
          report = await clusterStatus(cluster, reg);
        }
        if (!report.ok) process.stderr.write(`${ui.fail} Timed out after ${values['wait-duration']} waiting for veil to be ready\n`);
      }
      if (values.output) printStructured(report, values.output);
      else process.stdout.write(formatStatusReport(report, ui));
      return exitCode(report);
    } finally {
      reg.close();
    }
  },
});
