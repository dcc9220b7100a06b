// veil verify: the built-in encryption connectivity test.
import { currentCluster } from '../control/cluster.js';
import { parseDuration } from '../agent/settings.js';
import { verifyEncryption } from '../operator/verify.js';
import { formatVerifyReport } from '../operator/verify-report.js';
import { command, flagValue } from './flags.js';
import { printStructured } from './output.js';
import { ui } from './ui.js';
import { table } from '../util/text-table.js';

export const { run } = command({
  name: 'veil verify',
  usage: ['veil verify [--cluster NAME] [--timeout DUR] [-o json|yaml]'],
  about: `Proves that pod traffic is encrypted on the wire. Creates one short-lived test pod per node
(veil-verify-*), and for every ordered pair of nodes sends ICMP, TCP and UDP carrying a random
marker while tcpdump records the underlay (eth0) of every node. Passes only if all traffic
arrived, no marker appears in any capture, and the underlay carried nothing but the installed
mode's tunnel packets (WireGuard on UDP 51871, ESP-in-UDP on 4500, or raw ESP) between the nodes, plus ARP
and IPv6 neighbour discovery. Without encryption installed it fails: plaintext is seen.
Test pods and captures are removed afterwards, pass or fail.`,
  flags: {
    timeout: { type: 'string', value: 'DUR', default: '5s', help: 'per-protocol timeout of one pair (default 5s)' },
  },
  output: { choices: ['json', 'yaml'], help: 'json or yaml (the full report)' },
  notes: 'Exit codes: 0 passed, 1 failed (the table and the reasons say why), 2 bad usage.',
  examples: ['veil verify', "veil verify -o json | jq '.pairs[] | select(.ok | not)'"],
  async run({ values }) {
    const cluster = currentCluster(values.cluster);
    const report = await verifyEncryption({
      cluster, timeoutMs: flagValue(() => parseDuration(values.timeout!)),
      progress: values.output ? undefined : (line) => process.stderr.write(`${ui.info} ${line}\n`),
    });
    if (values.output) printStructured(report, values.output);
    else process.stdout.write(formatVerifyReport(report, ui, table));
    return report.ok ? 0 : 1;
  },
});
