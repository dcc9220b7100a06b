// veil ipsec: one node's ESP SAs and selectors, as `ip -s xfrm state` / `ip -s xfrm policy` show
// them, and its SAs exported for Wireshark/tshark. Parsing and printing only; the views are in
// src/operator/ipsec-xfrm-view.ts, the data comes from the agent's /ipsec/sas endpoint.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { agentSocketPath } from '../agent/agent.js';
import { AgentClient } from '../agent/agent-client.js';
import type { IpsecSasReport } from '../agent/api.js';
import {
  formatXfrmPolicy, formatXfrmState, wiresharkOptionLines, wiresharkSaRecords, wiresharkUatFile, xfrmPolicyEntries, xfrmStateEntries,
} from '../operator/ipsec-xfrm-view.js';
import { VeilError } from '../util/errors.js';
import { printStructured } from './output.js';
import { checkOutputFormat } from './read-flags.js';

const HELP: Record<string, string> = {
  '': `Usage: veil ipsec <state|policy|sa-export> NODE [flags]

Subcommands:
  state NODE [--show-keys] [-o json|yaml]              the SAs, like 'ip -s xfrm state' (keys hidden unless --show-keys)
  policy NODE [-o json|yaml]                           the selectors, like 'ip -s xfrm policy'
  sa-export NODE --format wireshark [-o FILE] [--uat-file FILE]
                                                       the SAs with their keys, for tshark/Wireshark to decrypt a capture

Examples:
  veil ipsec state kind-worker
  veil ipsec state kind-worker --show-keys -o json
  veil ipsec policy kind-worker
  veil ipsec sa-export kind-worker --format wireshark > sa.opts
  eval tshark -r underlay.pcap $(tr '\\n' ' ' < sa.opts) -Y icmp

Run 'veil ipsec <subcommand> -h' for its flags.`,
  state: `Usage: veil ipsec state NODE [--show-keys] [-o json|yaml] [--cluster NAME]

The node's ESP security associations, one block per SA as 'ip -s xfrm state' prints them: outer
src/dst, SPI (the key id), reqid 1, tunnel mode, ESN with a 1024-packet replay window, the
algorithm, ESP-in-UDP 4500, the direction and peer, sequence numbers, byte/packet counters and
add/use times. Key material is hidden unless --show-keys (root only: it comes from the agent's socket).

Examples:
  veil ipsec state kind-worker
  veil ipsec state kind-worker --show-keys
  veil ipsec state kind-worker -o json`,
  policy: `Usage: veil ipsec policy NODE [-o json|yaml] [--cluster NAME]

The node's selectors, as 'ip -s xfrm policy' prints them: for each peer, its pod CIDR (and node IP
with node encryption) out through the SA in use (dir out), and in/fwd from the peer's tunnel.

Examples:
  veil ipsec policy kind-worker
  veil ipsec policy kind-worker -o yaml`,
  'sa-export': `Usage: veil ipsec sa-export NODE --format wireshark [-o FILE] [--uat-file FILE] [--cluster NAME]

Writes the node's SAs (both directions, every key in force) with their keys in the form tshark's
ESP preferences read, so a capture of the node's underlay can be decrypted by a third-party tool.
By default: tshark command-line options, one per line (-o esp.enable_encryption_decode:TRUE and one
-o 'uat:esp_sa:...' per SA), to stdout or to -o FILE. With --uat-file FILE: the esp_sa file of a
Wireshark profile (the same eight quoted fields per line, without the uat:esp_sa: prefix); put it
in ~/.config/wireshark/ (or a profile directory) and set esp.enable_encryption_decode: TRUE.
The output holds key material: keep it secret. tshark shows the ICV as [incorrect] with extended
sequence numbers (it does not fold in the high bits); the payload still decrypts.

Examples:
  veil ipsec sa-export kind-worker --format wireshark -o sa.opts
  eval tshark -r underlay.pcap $(tr '\\n' ' ' < sa.opts) -Y icmp
  veil ipsec sa-export kind-worker --format wireshark --uat-file ~/.config/wireshark/esp_sa`,
};

async function requireNode(cluster: string, node: string | undefined, sub: string): Promise<string> {
  if (!node) throw new VeilError('BAD_ARGS', 'which node?', `name one, e.g. 'veil ipsec ${sub} kind-worker'`);
  const reg = openRegistry(cluster);
  try {
    if (await reg.get('Node', node)) return node;
    const names = (await reg.list('Node')).map((n) => n.metadata.name);
    throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, names.length ? `nodes: ${names.join(', ')}` : "create the lab with 'veil lab up'");
  } finally {
    reg.close();
  }
}

async function fetchSas(cluster: string, node: string, showKeys: boolean): Promise<IpsecSasReport> {
  return new AgentClient(agentSocketPath(cluster, node)).ipsecSas(showKeys);
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '-h' || sub === '--help') { console.log(HELP['']); return sub ? 0 : 2; }
  if (!(sub in HELP) || sub === '') throw new VeilError('BAD_ARGS', `unknown subcommand 'ipsec ${sub}'`, 'use state, policy or sa-export');
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: {
      'show-keys': { type: 'boolean' }, output: { type: 'string', short: 'o' }, format: { type: 'string' }, 'uat-file': { type: 'string' },
      cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(HELP[sub]); return 0; }
  if (positionals.length > 1) throw new VeilError('BAD_ARGS', `ipsec ${sub} takes one NODE, got ${positionals.join(' ')}`, `run 'veil ipsec ${sub} -h'`);
  if (sub !== 'sa-export') checkOutputFormat(values.output);
  const cluster = currentCluster(values.cluster);
  const node = await requireNode(cluster, positionals[0], sub);
  switch (sub) {
    case 'state': {
      const entries = xfrmStateEntries(await fetchSas(cluster, node, values['show-keys'] === true));
      if (values.output) printStructured(entries, values.output);
      else process.stdout.write(formatXfrmState(entries));
      return 0;
    }
    case 'policy': {
      const entries = xfrmPolicyEntries(await fetchSas(cluster, node, false));
      if (values.output) printStructured(entries, values.output);
      else process.stdout.write(formatXfrmPolicy(entries));
      return 0;
    }
    default: {
      if (values.format !== 'wireshark') {
        throw new VeilError('BAD_ARGS', values.format ? `unknown export format '${values.format}'` : 'sa-export needs --format', 'use --format wireshark');
      }
      const records = wiresharkSaRecords(await fetchSas(cluster, node, true));
      if (!records.length) throw new VeilError('NO_SAS', `the agent on ${node} has no SAs yet`, "wait until its peers are up ('veil agent encrypt status NODE')");
      if (values['uat-file']) writeFileSync(values['uat-file'], wiresharkUatFile(records), { mode: 0o600 });
      if (values.output) writeFileSync(values.output, wiresharkOptionLines(records), { mode: 0o600 });
      if (!values['uat-file'] && !values.output) process.stdout.write(wiresharkOptionLines(records));
      else console.error(`${records.length} SAs of ${node} written to ${[values['uat-file'], values.output].filter(Boolean).join(' and ')}`);
      return 0;
    }
  }
}
