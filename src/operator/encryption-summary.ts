// The cluster-wide encryption summary of `cilium encryption status` (cilium-cli), computed from
// every node's `encrypt status` JSON (Cilium's EncryptionStatus shape): one line per mode, and for
// IPsec the keys in use, the highest sequence number, the expected key count and the errors.
import type { CiliumEncryptionStatus, EncryptionModeName } from '../agent/api.js';

/** What one node's agent answered on /encrypt (or a stand-in: {mode:'Disabled'} without an agent). */
export interface NodeEncryption {
  node: string;
  status: CiliumEncryptionStatus;
}

/** cilium-cli's ClusterEncryptionStatus; zero values are left out of the JSON form. */
export interface ClusterEncryptionStatus {
  'total-node-count'?: number;
  'enc-disabled-node-count'?: number;
  'enc-ipsec-node-count'?: number;
  'enc-wireguard-node-count'?: number;
  'ipsec-keys-in-use-node-count'?: Record<string, number>;
  'ipsec-max-seq-num'?: string;
  'ipsec-err-count'?: number;
  'ipsec-key-rotation-in-progress'?: boolean;
  'ipsec-expected-key-count'?: number;
  'xfrm-errors'?: Record<string, number>;
  'xfrm-error-node-count'?: Record<string, number>;
}

/** The node's mode; anything unknown (an older or newer agent) counts as Disabled, as cilium-cli does. */
export function modeOf(status: CiliumEncryptionStatus): EncryptionModeName {
  const m = status.mode;
  return m === 'IPsec' || m === 'Wireguard' ? m : 'Disabled';
}

/** The sequence-number part of "0x1a/0xffffffffffffffff" as a bigint (-1 for N/A or junk). */
function seqValue(s: string | undefined): bigint {
  const head = (s ?? '').split('/')[0]!.trim();
  return /^0x[0-9a-f]+$/i.test(head) ? BigInt(head) : -1n;
}

/** Expected IPsec keys per node: (nodes - 1) x 2 (one per direction; IPv4, no tunnel, no ENI). */
export function expectedIpsecKeyCount(totalNodes: number): number {
  return Math.max(0, totalNodes - 1) * 2;
}

export function summarizeEncryption(nodes: NodeEncryption[], opts: { ipsecEnabled: boolean }): ClusterEncryptionStatus {
  const cs: ClusterEncryptionStatus = { 'total-node-count': nodes.length };
  const inc = (k: 'enc-disabled-node-count' | 'enc-ipsec-node-count' | 'enc-wireguard-node-count') => { cs[k] = (cs[k] ?? 0) + 1; };
  const keys: Record<string, number> = {};
  const xfrm: Record<string, number> = {};
  const xfrmNodes: Record<string, number> = {};
  let maxSeq = -1n;
  let errors = 0;
  const expected = expectedIpsecKeyCount(nodes.length);
  let rotating = false;
  for (const { status } of nodes) {
    const mode = modeOf(status);
    if (mode === 'Disabled') { inc('enc-disabled-node-count'); continue; }
    if (mode === 'Wireguard') { inc('enc-wireguard-node-count'); continue; }
    inc('enc-ipsec-node-count');
    const ip = status.ipsec ?? {};
    const inUse = ip['keys-in-use'] ?? 0;
    if (inUse > 0) keys[String(inUse)] = (keys[String(inUse)] ?? 0) + 1;
    if (opts.ipsecEnabled && inUse !== expected) rotating = true;
    const seq = seqValue(ip['max-seq-number']);
    if (seq > maxSeq) { maxSeq = seq; cs['ipsec-max-seq-num'] = ip['max-seq-number']; }
    errors += ip['error-count'] ?? 0;
    for (const [name, n] of Object.entries(ip['xfrm-errors'] ?? {})) {
      if (!n) continue;
      xfrm[name] = (xfrm[name] ?? 0) + n;
      xfrmNodes[name] = (xfrmNodes[name] ?? 0) + 1;
    }
  }
  if (cs['enc-ipsec-node-count']) {
    if (Object.keys(keys).length) cs['ipsec-keys-in-use-node-count'] = keys;
    if (errors) cs['ipsec-err-count'] = errors;
    if (rotating) cs['ipsec-key-rotation-in-progress'] = true;
    if (opts.ipsecEnabled && expected) cs['ipsec-expected-key-count'] = expected;
    if (Object.keys(xfrm).length) { cs['xfrm-errors'] = xfrm; cs['xfrm-error-node-count'] = xfrmNodes; }
  }
  return cs;
}

/** How many of the nodes run `mode`, e.g. for "Wireguard (4/4 nodes)". */
export function modeCounts(cs: ClusterEncryptionStatus): { mode: EncryptionModeName; count: number }[] {
  const out: { mode: EncryptionModeName; count: number }[] = [];
  if (cs['enc-disabled-node-count']) out.push({ mode: 'Disabled', count: cs['enc-disabled-node-count'] });
  if (cs['enc-ipsec-node-count']) out.push({ mode: 'IPsec', count: cs['enc-ipsec-node-count'] });
  if (cs['enc-wireguard-node-count']) out.push({ mode: 'Wireguard', count: cs['enc-wireguard-node-count'] });
  return out;
}

/** The summary text, line for line as cilium-cli prints it (modes in order, then an empty line). */
export function formatEncryptionSummary(cs: ClusterEncryptionStatus): string {
  const total = cs['total-node-count'] ?? 0;
  const out: string[] = [];
  for (const { mode, count } of modeCounts(cs)) {
    out.push(`Encryption: ${mode} (${count}/${total} nodes)`);
    if (mode !== 'IPsec') continue;
    const keys = Object.entries(cs['ipsec-keys-in-use-node-count'] ?? {});
    if (keys.length) out.push(`IPsec keys in use: ${keys.map(([k, n]) => `${k} on ${n}/${total}`).join(', ')}`);
    out.push(`IPsec highest Seq. Number: ${cs['ipsec-max-seq-num'] ?? 'N/A'} across all nodes`);
    out.push(`IPsec expected key count: ${cs['ipsec-expected-key-count'] ?? 0}`);
    out.push(`IPsec key rotation in progress: ${cs['ipsec-key-rotation-in-progress'] === true}`);
    out.push(`IPsec errors: ${cs['ipsec-err-count'] ?? 0} across all nodes`);
    for (const [name, n] of Object.entries(cs['xfrm-errors'] ?? {})) {
      out.push(`\t${name}: ${n} on ${cs['xfrm-error-node-count']?.[name] ?? 0}/${total} nodes`);
    }
  }
  return out.join('\n') + '\n\n';
}

/** `--per-node-details`: `Node: <name>` and `Encryption: <mode>` per node, then an empty line. */
export function formatPerNode(nodes: NodeEncryption[]): string {
  return nodes.map((n) => `Node: ${n.node}\nEncryption: ${modeOf(n.status)}\n\n`).join('');
}

/** cilium-cli's JSON: 1-space indent. */
export function encryptionSummaryJson(cs: ClusterEncryptionStatus): string {
  return JSON.stringify(cs, null, 1) + '\n';
}
