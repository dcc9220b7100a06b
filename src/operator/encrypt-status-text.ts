// The text form of `encrypt status` (cilium-dbg's layout: "%-26s" padding, tab-indented details),
// from the JSON form (Cilium's EncryptionStatus shape), so both always tell the same story.
import type { CiliumEncryptionStatus } from '../agent/api.js';

export function formatEncryptStatus(st: CiliumEncryptionStatus): string {
  const out: string[] = [];
  if (st.msg) out.push(`Msg: ${st.msg}`);
  out.push(`Encryption: ${st.mode.padEnd(26)}`);
  for (const i of st.wireguard?.interfaces ?? []) {
    out.push(`Interface: ${i.name}`);
    out.push(`\tPublic key: ${i['public-key']}`);
    out.push(`\tListen port: ${i['listen-port']}`);
    out.push(`\tNumber of peers: ${i['peer-count'] ?? 0}`);
    for (const p of i.peers ?? []) {
      out.push(`\tPeer: ${p['public-key']}${p.node ? ` (${p.node})` : ''}`);
      out.push(`\t\tEndpoint: ${p.endpoint ?? '(none)'}`);
      out.push(`\t\tAllowed IPs: ${(p['allowed-ips'] ?? []).join(', ')}`);
      const hs = p['last-handshake-time'];
      out.push(`\t\tLatest handshake: ${!hs || hs.startsWith('0001-') ? '(none)' : hs}`);
      out.push(`\t\tTransfer: ${p['transfer-rx'] ?? 0} B received, ${p['transfer-tx'] ?? 0} B sent`);
    }
  }
  const ipsec = st.ipsec;
  if (ipsec) {
    out.push(`Decryption interface(s): ${(ipsec['decrypt-interfaces'] ?? []).join(', ')}`);
    out.push(`Keys in use: ${String(ipsec['keys-in-use'] ?? 0).padEnd(26)}`);
    out.push(`Max Seq. Number: ${ipsec['max-seq-number'] ?? 'N/A'}`);
    out.push(`Errors: ${String(ipsec['error-count'] ?? 0).padEnd(26)}`);
    for (const [name, n] of Object.entries(ipsec['xfrm-errors'] ?? {})) if (n) out.push(`\t${name}: ${String(n).padEnd(26)}`);
  }
  return out.join('\n') + '\n';
}
