// What a member without a veil agent runs to join the cluster (`veil peer config`, `veil ipsec
// peer-config`): a wg-quick configuration with every veil node as a [Peer], or the `ip xfrm`
// commands with Cilium's per-tunnel keys for every node. Pure text from the registry's view.
import type { ExternalPeer } from '../agent/external-peers.js';
import { deriveTunnelTransforms } from '../keys/ipsec-derive.js';
import type { IpsecKey } from '../keys/ipsec-keyfile.js';
import { REPLAY_WINDOW_SIZE } from '../esp/replay-window.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import type { EspTransform } from '../esp/esp-transform.js';
import { WG_PORT } from '../agent/wireguard-mode.js';
import type { IpsecEncapsulation } from '../agent/settings.js';

/** A veil node as a peer's configuration needs it. */
export interface ClusterNode {
  name: string;
  ip: string;
  podCIDRs: string[];
  /** WireGuard: the public key its agent published. */
  publicKey?: string;
  /** IPsec: the boot id its agent published. */
  bootID?: string;
}

const hex = (b: Uint8Array) => `0x${Buffer.from(b).toString('hex')}`;
const hostAddresses = (p: ExternalPeer) => p.allowedIPs.filter((c) => c.endsWith('/32') || c.endsWith('/128'));

/** wg-quick configuration for `peer`: its own interface (private key left to it), each node a [Peer]. */
export function wgQuickConfig(cluster: string, peer: ExternalPeer, nodes: ClusterNode[], nodeEncryption: boolean): string {
  const lines = [
    `# veil cluster '${cluster}': wg-quick configuration of peer '${peer.name}' (e.g. /etc/wireguard/veil.conf, then wg-quick up veil)`,
    '[Interface]',
    `# PrivateKey = <the private key whose public key is ${peer.publicKey ?? '(none registered: veil peer add --public-key)'}; it never leaves this host>`,
  ];
  const own = hostAddresses(peer);
  if (own.length) lines.push(`Address = ${own.join(', ')}`);
  lines.push(`ListenPort = ${peer.endpoint.port}`);
  for (const n of nodes) {
    if (!n.publicKey) {
      lines.push('', `# node ${n.name}: its agent has published no WireGuard key yet (re-run this once it has)`);
      continue;
    }
    lines.push('', `[Peer]`, `# node ${n.name}`, `PublicKey = ${n.publicKey}`, `Endpoint = ${n.ip.includes(':') ? `[${n.ip}]` : n.ip}:${WG_PORT}`,
      `AllowedIPs = ${[...n.podCIDRs, ...(nodeEncryption ? [`${n.ip}/${n.ip.includes(':') ? 128 : 32}`] : [])].join(', ')}`);
    if (peer.persistentKeepalive) lines.push(`PersistentKeepalive = ${peer.persistentKeepalive}`);
  }
  return lines.join('\n') + '\n';
}

/** The algorithm arguments of `ip xfrm state add` for a transform, as Cilium hands them to the kernel. */
export function xfrmAlgorithmArgs(t: EspTransform): string {
  if (t.kind === 'aead') return `aead 'rfc4106(gcm(aes))' ${hex(Buffer.concat([t.key, t.salt]))} ${t.icvLength * 8}`;
  // Cilium gives the kernel 'auth' without a truncation length: the kernel's default for the
  // algorithm applies (hmac(sha256): 96 bits, hmac(sha512): 256); veil's ICV is the same.
  return `auth '${t.auth}' ${hex(t.authKey)} enc '${t.enc}' ${hex(t.encKey)}`;
}

/** The mark that tells the kernel which node an inbound SA is for (Cilium's IN state mark and mask). */
export function inboundMark(nodeIndex: number): { mark: string; mask: string } {
  return { mark: `0x${(0xd00 | (nodeIndex << 16)).toString(16)}`, mask: '0xffff0f00' };
}

/**
 * The shell commands that make a plain Linux host `peer` an IPsec member: per node one SA each way
 * (Cilium's per-tunnel keys from the key and both boot ids, SPI = key id, reqid 1, tunnel mode, ESN
 * with a 1024-packet replay window, ESP in UDP 4500 or raw ESP as the cluster's encapsulation says), policies between its allowed IPs and the
 * node's pod CIDRs, and routes to those pod CIDRs through the node. Every node's inbound SA has the
 * same destination and SPI, which the kernel tells apart only by mark (as Cilium does): a tc
 * filter marks what arrives from each node, and its inbound SA carries that mark. IPv6 as IPv4: a
 * policy pairs an allowed IP and a pod CIDR of the same family (ip xfrm refuses mixed ones); one SA
 * pair per node carries both inner families, whatever the family of the tunnel's ends (tunnel mode).
 */
export function xfrmPeerCommands(cluster: string, peer: ExternalPeer, key: IpsecKey, nodes: ClusterNode[], encapsulation: IpsecEncapsulation = 'udp'): string {
  const me = peer.endpoint.address;
  const own = hostAddresses(peer);
  const v6 = (ip: string) => ip.includes(':');
  /** The route's source: the peer's own address of the pod CIDR's family, if it has one. */
  const srcFor = (cidr: string) => {
    const a = own.find((o) => v6(o) === v6(cidr));
    return a ? ` src ${a.replace(/\/\d+$/, '')}` : '';
  };
  const lines = [
    `# veil cluster '${cluster}': IPsec for peer '${peer.name}' (${me}), key id ${key.spi}. Run as root on the peer.`,
    encapsulation === 'udp'
      ? `# Receiving ESP in UDP needs a UDP socket on port ${ESP_IN_UDP_PORT} with UDP_ENCAP_ESPINUDP (an IKE daemon opens one).`
      : '# Raw ESP (IP protocol 50, no UDP): the path to every node must pass protocol 50.',
    '# After a key rotation, flush the SAs of the old key (ip xfrm state deleteall proto esp) and apply the new output.',
  ];
  lines.push('DEV=${DEV:-eth0}   # the interface the nodes reach this host on', 'tc qdisc add dev $DEV clsact 2>/dev/null || true');
  for (const a of [own.find((o) => !v6(o)), own.find(v6)]) if (a) lines.push(`ip addr add ${a} dev lo 2>/dev/null || true`);
  const encap = encapsulation === 'udp' ? ` encap espinudp ${ESP_IN_UDP_PORT} ${ESP_IN_UDP_PORT} 0.0.0.0` : '';
  for (const [i, n] of nodes.entries()) {
    if (!n.bootID) {
      lines.push(`# node ${n.name}: its agent has published no boot id yet (re-run this once it has)`);
      continue;
    }
    const t = deriveTunnelTransforms(key, { ip: me, bootId: peer.bootID }, { ip: n.ip, bootId: n.bootID });
    const sa = (from: string, to: string, tr: EspTransform, mark = '') =>
      `ip xfrm state add src ${from} dst ${to} proto esp spi ${key.spi} reqid 1 mode tunnel ${xfrmAlgorithmArgs(tr)} ` +
      `flag esn replay-window ${REPLAY_WINDOW_SIZE}${mark}${encap}`;
    const { mark, mask } = inboundMark(i + 1);
    const pref = 49000 + i + 1;
    lines.push(`# node ${n.name} (${n.ip})`,
      `tc filter del dev $DEV ingress pref ${pref} 2>/dev/null; tc filter add dev $DEV ingress pref ${pref} ${v6(n.ip) ? `protocol ipv6 u32 match ip6 src ${n.ip}/128` : `protocol ip u32 match ip src ${n.ip}/32`} action skbedit mark ${mark}`,
      sa(me, n.ip, t.out), sa(n.ip, me, t.in, ` mark ${mark} mask ${mask}`));
    for (const cidr of n.podCIDRs) {
      const mineOfFamily = peer.allowedIPs.filter((mine) => v6(mine) === v6(cidr));
      if (!mineOfFamily.length) continue; // no address of this family on the peer: nothing of it to carry
      for (const mine of mineOfFamily) {
        lines.push(`ip xfrm policy add src ${mine} dst ${cidr} dir out tmpl src ${me} dst ${n.ip} proto esp reqid 1 mode tunnel`);
        for (const dir of ['in', 'fwd']) lines.push(`ip xfrm policy add src ${cidr} dst ${mine} dir ${dir} tmpl src ${n.ip} dst ${me} proto esp reqid 1 mode tunnel`);
      }
      // The inner family's route: via the node when the tunnel has that family, else onto the device (the policy takes it into the tunnel).
      lines.push(`ip route replace ${cidr} ${v6(n.ip) === v6(cidr) ? `via ${n.ip}` : 'dev $DEV'}${srcFor(cidr)}`);
    }
  }
  return lines.join('\n') + '\n';
}
