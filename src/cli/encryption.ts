// veil encryption: cluster-wide encryption commands, like `cilium encryption`: status here, the
// IPsec key commands (create-key, rotate-key, key-status) in encryption-keys.ts.
import { currentCluster, openRegistry } from '../control/cluster.js';
import { readSettings } from '../agent/install-state.js';
import { parseDuration } from '../agent/settings.js';
import { VeilError } from '../util/errors.js';
import { askAgent, observeNodes, runningAgentPid } from '../operator/observe.js';
import { leasesByName } from '../agent/registry-node-source.js';
import { encryptionSummaryJson, formatEncryptionSummary, formatPerNode, summarizeEncryption, type NodeEncryption } from '../operator/encryption-summary.js';
import type { CiliumEncryptionStatus } from '../agent/api.js';
import { printEach, printStructured } from './output.js';
import { command, flagValue, group } from './flags.js';
import { KEY_ALIASES, KEY_COMMANDS } from './encryption-keys.js';

const status = command({
  name: 'veil encryption status',
  summary: 'the encryption of every node, summed up (cilium-cli format)',
  usage: ['veil encryption status [--node NODE] [--per-node-details] [--wait-duration DUR] [-o summary|json|yaml]'],
  about: `Asks every node's agent for its encryption status and sums it up as cilium-cli does:
one "Encryption: <mode> (n/total nodes)" line per mode; for IPsec also the keys in use, the
highest sequence number, the expected key count, whether a key rotation is in progress and the
errors. Nodes without an agent count as Disabled.`,
  flags: {
    node: { type: 'string', value: 'NODE', help: 'only this node' },
    'per-node-details': { type: 'boolean', help: 'one block per node instead of the summary' },
    'wait-duration': { type: 'string', value: 'DUR', default: '1m', help: 'how long to wait for agents that do not answer yet (default 1m)' },
  },
  output: { choices: ['summary', 'json', 'yaml'], default: 'summary', help: "summary (default), json (cilium-cli's fields) or yaml" },
  notes: 'Exit codes: 0 every asked node answered, 1 some installed agent did not answer, 2 bad usage.',
  examples: ['veil encryption status', 'veil encryption status --per-node-details', 'veil encryption status -o json'],
  async run({ values }) {
    const deadline = Date.now() + flagValue(() => parseDuration(values['wait-duration']!));
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    try {
      const settings = await readSettings(reg);
      const installed = !!settings?.['encryption.enabled'];
      let observed = await observeNodes(cluster, reg, settings);
      if (values.node) {
        observed = observed.filter((o) => o.name === values.node);
        if (!observed.length) throw new VeilError('UNKNOWN_NODE', `unknown node '${values.node}'`, "see the nodes with 'veil lab get nodes'");
      }
      const nodes: NodeEncryption[] = [];
      const failures: string[] = [];
      for (const o of observed) {
        if (!installed) { nodes.push({ node: o.name, status: { mode: 'Disabled' } }); continue; }
        let answer: { value?: CiliumEncryptionStatus; error?: string } = o.encrypt ? { value: o.encrypt } : await askAgent(cluster, o.name, (a) => a.encryptStatus(), reg);
        // Wait only for an agent that is alive but not answering yet (starting up); a dead one will not.
        while (!answer.value && o.agentPid !== undefined && runningAgentPid(cluster, o.name, (await leasesByName(reg)).get(o.name)) !== undefined && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 1000));
          answer = await askAgent(cluster, o.name, (a) => a.encryptStatus(), reg);
        }
        if (answer.value) nodes.push({ node: o.name, status: answer.value });
        else failures.push(`${o.name}: ${answer.error ?? 'no answer'}`);
      }
      const summary = summarizeEncryption(nodes, { ipsecEnabled: installed && settings!['encryption.type'] === 'ipsec' });
      if (failures.length) summary['total-node-count'] = observed.length;
      if (values['per-node-details']) {
        if (values.output === 'summary') process.stdout.write(formatPerNode(nodes));
        else printEach(nodes.map((n) => ({ node: n.node, ...n.status })), values.output!);
      } else if (values.output === 'json') process.stdout.write(encryptionSummaryJson(summary));
      else if (values.output === 'yaml') printStructured(summary, 'yaml');
      else process.stdout.write(formatEncryptionSummary(summary));
      for (const f of failures) process.stderr.write(`Unable to get the encryption status of ${f}\n`);
      return failures.length ? 1 : 0;
    } finally {
      reg.close();
    }
  },
});

export const { run } = group({
  name: 'veil encryption',
  about: 'veil encryption: cluster-wide encryption status, and the IPsec keys as cilium-cli does them',
  commands: { status, ...KEY_COMMANDS },
  aliases: KEY_ALIASES,
  examples: ['veil encryption status', 'veil encryption status -o json', 'veil encryption create-key', 'veil encryption rotate-key'],
});
