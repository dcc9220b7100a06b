// veil metrics NODE: the Prometheus metrics of one node's agent.
import { currentCluster, openRegistry } from '../control/cluster.js';
import { AgentClient } from '../agent/agent-client.js';
import { mustReadSettings } from '../agent/install-state.js';
import { nodeSpec } from '../lab/objects.js';
import { inNetns, run as runCommand } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { formatSamples, parsePrometheusText } from '../operator/prometheus-text.js';
import { command } from './flags.js';
import { findNode, nodeName } from './node-arg.js';
import { printStructured } from './output.js';
import { table } from '../util/text-table.js';

/** GET url with the node's network namespace (the agent listens on the node's underlay address). */
function httpGetInNetns(netns: string, url: string): string {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => { if (!r.ok) throw new Error('HTTP ' + r.status); process.stdout.write(await r.text()); })`
    + `.catch((e) => { process.stderr.write(String(e.cause?.message ?? e.message)); process.exit(1); })`;
  const r = runCommand(inNetns(netns, [process.execPath, '-e', script]), { timeout: 10_000 });
  if (r.status !== 0) throw new VeilError('METRICS_UNREACHABLE', `cannot fetch ${url}: ${r.stderr.trim() || `exit ${r.status}`}`, "is the agent running? see 'veil status'");
  return r.stdout;
}

export const { run } = command({
  name: 'veil metrics',
  usage: ['veil metrics NODE [--raw] [--http] [--grep TEXT] [-o json|yaml]'],
  about: `The agent's Prometheus metrics on NODE: per peer bytes and packets each way, handshake age,
drops by reason, keys in use, agent health, ... Each agent also serves them over HTTP on its
node IP, port agent.metricsPort (default 9962), for Prometheus.`,
  positionals: true,
  flags: {
    raw: { type: 'boolean', help: 'the Prometheus text exposition as served' },
    http: { type: 'boolean', help: "fetch over HTTP from the node's own namespace (http://NODE_IP:PORT/metrics) instead of the agent's local socket" },
    grep: { type: 'string', value: 'TEXT', help: 'only samples whose name contains TEXT' },
  },
  output: { choices: ['json', 'yaml'], help: 'json or yaml (parsed samples)' },
  examples: ['veil metrics kind-worker', 'veil metrics kind-worker --grep peer', 'veil metrics kind-worker --http --raw', 'veil metrics kind-worker -o json'],
  async run({ values, positionals }) {
    const node = nodeName(positionals[0], 'veil metrics kind-worker');
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    let text: string;
    try {
      const obj = await findNode(reg, node);
      if (values.http) {
        const port = (await mustReadSettings(reg))['agent.metricsPort'];
        text = httpGetInNetns(nodeSpec(obj).netns, `http://${nodeSpec(obj).internalIP.includes(':') ? `[${nodeSpec(obj).internalIP}]` : nodeSpec(obj).internalIP}:${port}/metrics`);
      } else {
        text = await (await AgentClient.connect(cluster, node, { registry: reg })).metricsText();
      }
    } finally {
      reg.close();
    }
    if (values.raw) { process.stdout.write(text); return 0; }
    const samples = parsePrometheusText(text).filter((s) => !values.grep || s.name.includes(values.grep));
    if (values.output) printStructured(samples, values.output);
    else console.log(table([['METRIC', 'VALUE'], ...formatSamples(samples)]));
    return 0;
  },
});
