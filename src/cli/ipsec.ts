// veil ipsec: one node's ESP SAs and selectors, as `ip -s xfrm state` / `ip -s xfrm policy` show
// them, and its SAs exported for Wireshark/tshark. Parsing and printing only; the views are in
// src/operator/ipsec-xfrm-view.ts, the data comes from the agent's /ipsec/sas endpoint.
import { writeFileSync } from 'node:fs';
import { AgentClient } from '../agent/agent-client.js';
import type { IpsecSasReport } from '../agent/api.js';
import {
  formatXfrmPolicy, formatXfrmState, wiresharkOptionLines, wiresharkSaRecords, wiresharkUatFile, xfrmPolicyEntries, xfrmStateEntries,
} from '../operator/ipsec-xfrm-view.js';
import { VeilError } from '../util/errors.js';
import { printStructured } from './output.js';
import { command, group, UsageError } from './flags.js';
import { clusterNode } from './node-arg.js';
import { currentCluster } from '../control/cluster.js';
import { readSettings } from '../agent/install-state.js';
import { IpsecKeyLoader } from '../keys/ipsec-key-loader.js';
import { IPSEC_SECRET_DATA_KEY } from '../keys/ipsec-key-secret.js';
import { xfrmPeerCommands } from '../operator/peer-config.js';
import { clusterNodes, getPeer, withRegistry } from './peer.js';

async function fetchSas(cluster: string, node: string, showKeys: boolean): Promise<IpsecSasReport> {
  return (await AgentClient.connect(cluster, node)).ipsecSas(showKeys);
}

/** The one NODE of an ipsec subcommand, a node of the cluster. */
function target(cmd: string, clusterFlag: string | undefined, positionals: string[]): Promise<{ cluster: string; node: string }> {
  if (positionals.length > 1) throw new UsageError(`ipsec ${cmd} takes one NODE, got ${positionals.join(' ')}`, `run 'veil ipsec ${cmd} -h'`);
  return clusterNode(clusterFlag, positionals[0], `veil ipsec ${cmd} kind-worker`);
}

/** state and policy: the entries as 'ip xfrm' prints them, or as -o json|yaml. */
function show<T>(entries: T[], format: string | undefined, asText: (entries: T[]) => string): number {
  if (format) printStructured(entries, format);
  else process.stdout.write(asText(entries));
  return 0;
}

const state = command({
  name: 'veil ipsec state',
  summary: "the SAs, like 'ip -s xfrm state' (keys hidden unless --show-keys)",
  usage: ['veil ipsec state NODE [--show-keys] [-o json|yaml] [--cluster NAME]'],
  about: `The node's ESP security associations, one block per SA as 'ip -s xfrm state' prints them: outer
src/dst, SPI (the key id), reqid 1, tunnel mode, ESN with a 1024-packet replay window, the
algorithm, ESP-in-UDP 4500 (no encap line for raw ESP), the direction and peer, sequence numbers, byte/packet counters and
add/use times. Key material is hidden unless --show-keys (root only: it comes from the agent's socket).`,
  positionals: true,
  flags: { 'show-keys': { type: 'boolean', help: 'show the keys (root only)' } },
  output: { choices: ['json', 'yaml'] },
  examples: ['veil ipsec state kind-worker', 'veil ipsec state kind-worker --show-keys', 'veil ipsec state kind-worker -o json'],
  async run({ values, positionals }) {
    const { cluster, node } = await target('state', values.cluster, positionals);
    return show(xfrmStateEntries(await fetchSas(cluster, node, values['show-keys'] === true)), values.output, formatXfrmState);
  },
});

const policy = command({
  name: 'veil ipsec policy',
  summary: "the selectors, like 'ip -s xfrm policy'",
  usage: ['veil ipsec policy NODE [-o json|yaml] [--cluster NAME]'],
  about: `The node's selectors, as 'ip -s xfrm policy' prints them: for each peer, its pod CIDR (and node IP
with node encryption) out through the SA in use (dir out), and in/fwd from the peer's tunnel.`,
  positionals: true,
  output: { choices: ['json', 'yaml'] },
  examples: ['veil ipsec policy kind-worker', 'veil ipsec policy kind-worker -o yaml'],
  async run({ values, positionals }) {
    const { cluster, node } = await target('policy', values.cluster, positionals);
    return show(xfrmPolicyEntries(await fetchSas(cluster, node, false)), values.output, formatXfrmPolicy);
  },
});

const saExport = command({
  name: 'veil ipsec sa-export',
  summary: 'the SAs with their keys, for tshark/Wireshark to decrypt a capture',
  usage: ['veil ipsec sa-export NODE --format wireshark [-o FILE] [--uat-file FILE] [--cluster NAME]'],
  about: `Writes the node's SAs (both directions, every key in force) with their keys in the form tshark's
ESP preferences read, so a capture of the node's underlay can be decrypted by a third-party tool.
By default: tshark command-line options, one per line (-o esp.enable_encryption_decode:TRUE and one
-o 'uat:esp_sa:...' per SA), to stdout or to -o FILE. With --uat-file FILE: the esp_sa file of a
Wireshark profile (the same eight quoted fields per line, without the uat:esp_sa: prefix); put it
in ~/.config/wireshark/ (or a profile directory) and set esp.enable_encryption_decode: TRUE.
The output holds key material: keep it secret. tshark shows the ICV as [incorrect] with extended
sequence numbers (it does not fold in the high bits); the payload still decrypts.`,
  positionals: true,
  flags: {
    format: { type: 'string', value: 'wireshark', help: 'the export format (only wireshark)' },
    // -o here names a file (the tshark options), not an output format
    output: { type: 'string', short: 'o', value: 'FILE', help: 'write the tshark options to FILE instead of stdout' },
    'uat-file': { type: 'string', value: 'FILE', help: "write a Wireshark profile's esp_sa file" },
  },
  examples: [
    'veil ipsec sa-export kind-worker --format wireshark -o sa.opts',
    "eval tshark -r underlay.pcap $(tr '\\n' ' ' < sa.opts) -Y icmp",
    'veil ipsec sa-export kind-worker --format wireshark --uat-file ~/.config/wireshark/esp_sa',
  ],
  async run({ values, positionals }) {
    if (values.format !== 'wireshark') {
      throw new UsageError(values.format ? `unknown export format '${values.format}'` : 'sa-export needs --format', 'use --format wireshark');
    }
    const { cluster, node } = await target('sa-export', values.cluster, positionals);
    const records = wiresharkSaRecords(await fetchSas(cluster, node, true));
    if (!records.length) throw new VeilError('NO_SAS', `the agent on ${node} has no SAs yet`, "wait until its peers are up ('veil agent encrypt status NODE')");
    if (values['uat-file']) writeFileSync(values['uat-file'], wiresharkUatFile(records), { mode: 0o600 });
    if (values.output) writeFileSync(values.output, wiresharkOptionLines(records), { mode: 0o600 });
    if (!values['uat-file'] && !values.output) process.stdout.write(wiresharkOptionLines(records));
    else console.error(`${records.length} SAs of ${node} written to ${[values['uat-file'], values.output].filter(Boolean).join(' and ')}`);
    return 0;
  },
});

const peerConfig = command({
  name: 'veil ipsec peer-config',
  summary: "the ip xfrm commands that make a plain Linux host (a 'veil peer') an IPsec member",
  usage: ['veil ipsec peer-config NAME [--cluster NAME]'],
  about: `Prints, for the peer NAME ('veil peer add'), the shell commands that give a Linux host without
veil kernel IPsec with every node: per node one SA each way with Cilium's per-tunnel keys (derived
from the secret's current key, the peer's and the node's boot ids, as every agent derives them),
SPI = key id, reqid 1, tunnel mode, ESN with a 1024-packet replay window, ESP in UDP 4500 (raw ESP
when the cluster's encryption.ipsec.encapsulation is esp); the
policies between its allowed IPs and the nodes' pod CIDRs, and routes to those. The inbound SAs of
all nodes share destination and SPI: the kernel tells them apart by mark (Cilium's IN state mark),
set by a tc ingress filter per node (modules cls_u32, act_skbedit; DEV=eth0 unless set). It records the key
id in the peer object: the nodes then send to the peer under that key (the older of theirs and
its, as between nodes). After a key rotation, run it again and apply the output on the peer.
The output holds key material: keep it secret.`,
  positionals: true,
  examples: ['veil ipsec peer-config vm1 > vm1-ipsec.sh   # then on vm1: sh vm1-ipsec.sh'],
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`ipsec peer-config takes one NAME, got ${positionals.length}`, "run 'veil ipsec peer-config -h'");
    const name = positionals[0]!;
    const cluster = currentCluster(values.cluster);
    const text = await withRegistry(cluster, async (reg) => {
      const peer = await getPeer(reg, name);
      const settings = await readSettings(reg);
      const secretName = settings?.['encryption.ipsec.secretName'] ?? 'ipsec-keys';
      const raw = (await reg.get('Secret', secretName))?.data?.[IPSEC_SECRET_DATA_KEY];
      if (raw === undefined) throw new VeilError('NO_IPSEC_KEYS', `secret ${secretName} holds no IPsec keys`, `create it: veil secret create ${secretName} --from-literal=keys="3+ rfc4106(gcm(aes)) $(openssl rand -hex 20) 128"`);
      const loaded = new IpsecKeyLoader().load(Buffer.from(raw, 'base64').toString('utf8'), Date.now());
      if (!loaded.ok) throw new VeilError(loaded.error.code, `the IPsec key in secret ${secretName} is unusable: ${loaded.error.message}`, loaded.error.hint);
      const key = loaded.value.current;
      const out = xfrmPeerCommands(cluster, peer, key, clusterNodes(await reg.list('Node')), settings?.['encryption.ipsec.encapsulation'] ?? 'udp');
      await reg.mutate('Peer', name, (cur) => cur && { ...cur, spec: { ...(cur.spec ?? {}), ipsecKeyId: key.spi } });
      return out;
    });
    process.stdout.write(text);
    return 0;
  },
});

export const { run } = group({
  name: 'veil ipsec',
  about: "veil ipsec: one node's IPsec SAs and selectors (ip xfrm style), and its SAs for Wireshark",
  commands: { state, policy, 'sa-export': saExport, 'peer-config': peerConfig },
  examples: [
    'veil ipsec state kind-worker',
    'veil ipsec state kind-worker --show-keys -o json',
    'veil ipsec policy kind-worker',
    'veil ipsec sa-export kind-worker --format wireshark > sa.opts',
    "eval tshark -r underlay.pcap $(tr '\\n' ' ' < sa.opts) -Y icmp",
  ],
});
