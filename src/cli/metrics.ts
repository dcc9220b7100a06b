// veil metrics NODE: the Prometheus metrics of one node's agent.
import { parseArgs } from 'node:util';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { agentSocketPath } from '../agent/agent.js';
import { AgentClient } from '../agent/agent-client.js';
import { mustReadSettings } from '../agent/install-state.js';
import { nodeSpec } from '../lab/objects.js';
import { inNetns, run as runCommand } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { formatSamples, parsePrometheusText } from '../operator/prometheus-text.js';
import { printStructured } from './output.js';
import { checkOutputFormat } from './read-flags.js';
import { table } from '../util/text-table.js';

const HELP = `Usage: veil metrics NODE [--raw] [--http] [--grep TEXT] [-o json|yaml]

The agent's Prometheus metrics on NODE: per peer bytes and packets each way, handshake age,
drops by reason, keys in use, agent health, ... Each agent also serves them over HTTP on its
node IP, port agent.metricsPort (default 9962), for Prometheus.

Flags:
  --raw                 the Prometheus text exposition as served
  --http                fetch over HTTP from the node's own namespace (http://NODE_IP:PORT/metrics)
                        instead of the agent's local socket
  --grep TEXT           only samples whose name contains TEXT
  -o, --output FORMAT   json or yaml (parsed samples)
  --cluster NAME        the cluster (default: the current one)

Examples:
  veil metrics kind-worker
  veil metrics kind-worker --grep peer
  veil metrics kind-worker --http --raw
  veil metrics kind-worker -o json`;

/** GET url with the node's network namespace (the agent listens on the node's underlay address). */
function httpGetInNetns(netns: string, url: string): string {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => { if (!r.ok) throw new Error('HTTP ' + r.status); process.stdout.write(await r.text()); })`
    + `.catch((e) => { process.stderr.write(String(e.cause?.message ?? e.message)); process.exit(1); })`;
  const r = runCommand(inNetns(netns, [process.execPath, '-e', script]), { timeout: 10_000 });
  if (r.status !== 0) throw new VeilError('METRICS_UNREACHABLE', `cannot fetch ${url}: ${r.stderr.trim() || `exit ${r.status}`}`, "is the agent running? see 'veil status'");
  return r.stdout;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: {
      raw: { type: 'boolean' }, http: { type: 'boolean' }, grep: { type: 'string' }, output: { type: 'string', short: 'o' },
      cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(HELP); return 0; }
  checkOutputFormat(values.output);
  const node = positionals[0];
  if (!node) throw new VeilError('BAD_ARGS', 'which node?', "name one, e.g. 'veil metrics kind-worker'");
  const cluster = currentCluster(values.cluster);
  const reg = openRegistry(cluster);
  let text: string;
  try {
    const obj = await reg.get('Node', node);
    if (!obj) throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, "see the nodes with 'veil lab get nodes'");
    if (values.http) {
      const port = (await mustReadSettings(reg))['agent.metricsPort'];
      text = httpGetInNetns(nodeSpec(obj).netns, `http://${nodeSpec(obj).internalIP}:${port}/metrics`);
    } else {
      text = await new AgentClient(agentSocketPath(cluster, node)).metricsText();
    }
  } finally {
    reg.close();
  }
  if (values.raw) { process.stdout.write(text); return 0; }
  const samples = parsePrometheusText(text).filter((s) => !values.grep || s.name.includes(values.grep));
  if (values.output) printStructured(samples, values.output);
  else console.log(table([['METRIC', 'VALUE'], ...formatSamples(samples)]));
  return 0;
}
