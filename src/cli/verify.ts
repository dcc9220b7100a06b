// veil verify: the built-in encryption connectivity test.
import { parseArgs } from 'node:util';
import { currentCluster } from '../control/cluster.js';
import { parseDuration } from '../agent/settings.js';
import { verifyEncryption } from '../operator/verify.js';
import { formatVerifyReport } from '../operator/verify-report.js';
import { printStructured } from './output.js';
import { checkOutputFormat } from './read-flags.js';
import { ui } from './ui.js';
import { table } from '../util/text-table.js';

const HELP = `Usage: veil verify [--cluster NAME] [--timeout DUR] [-o json|yaml]

Proves that pod traffic is encrypted on the wire. Creates one short-lived test pod per node
(veil-verify-*), and for every ordered pair of nodes sends ICMP, TCP and UDP carrying a random
marker while tcpdump records the underlay (eth0) of every node. Passes only if all traffic
arrived, no marker appears in any capture, and the underlay carried nothing but the installed
mode's tunnel packets (WireGuard on UDP 51871, or ESP-in-UDP on 4500) between the nodes, plus ARP
and IPv6 neighbour discovery. Without encryption installed it fails: plaintext is seen.
Test pods and captures are removed afterwards, pass or fail.

Flags:
  --timeout DUR         per-protocol timeout of one pair (default 5s)
  -o, --output FORMAT   json or yaml (the full report)
  --cluster NAME        the cluster (default: the current one)

Exit codes: 0 passed, 1 failed (the table and the reasons say why), 2 bad usage.

Examples:
  veil verify
  veil verify -o json | jq '.pairs[] | select(.ok | not)'`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, allowPositionals: false,
    options: { cluster: { type: 'string' }, timeout: { type: 'string', default: '5s' }, output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { console.log(HELP); return 0; }
  checkOutputFormat(values.output);
  const cluster = currentCluster(values.cluster);
  const report = await verifyEncryption({
    cluster, timeoutMs: parseDuration(values.timeout!),
    progress: values.output ? undefined : (line) => process.stderr.write(`${ui.info} ${line}\n`),
  });
  if (values.output) printStructured(report, values.output);
  else process.stdout.write(formatVerifyReport(report, ui, table));
  return report.ok ? 0 : 1;
}
