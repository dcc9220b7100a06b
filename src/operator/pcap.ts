// Reading the pcap files tcpdump writes (classic format, either byte order, micro or nano seconds,
// Ethernet link type) and telling what each underlay frame is: the expected tunnel datagrams
// (WireGuard on 51871, ESP-in-UDP on 4500, raw ESP as IP protocol 50) between node addresses, ARP, IPv6 link housekeeping,
// or anything else (which on an encrypted cluster means plaintext leaked).
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';
import { WG_PORT } from '../agent/wireguard-mode.js';
import { VeilError } from '../util/errors.js';
import { formatIp } from '../net/cidr.js';

export interface PcapPacket {
  /** Seconds since the epoch (fractional). */
  time: number;
  /** The captured bytes (possibly shorter than on the wire). */
  data: Buffer;
}

const LINKTYPE_ETHERNET = 1;

export function parsePcap(buf: Buffer): PcapPacket[] {
  if (buf.length < 24) throw new VeilError('BAD_PCAP', `pcap file too short (${buf.length} bytes)`);
  const magic = buf.readUInt32LE(0);
  let le: boolean; let nano: boolean;
  if (magic === 0xa1b2c3d4) { le = true; nano = false; } else if (magic === 0xd4c3b2a1) { le = false; nano = false; }
  else if (magic === 0xa1b23c4d) { le = true; nano = true; } else if (magic === 0x4d3cb2a1) { le = false; nano = true; }
  else throw new VeilError('BAD_PCAP', `not a pcap file (magic 0x${magic.toString(16)})`, 'pcapng is not read here: capture with tcpdump -w');
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linkType = u32(20) & 0x0fffffff;
  if (linkType !== LINKTYPE_ETHERNET) throw new VeilError('BAD_PCAP', `unsupported link type ${linkType} (only Ethernet)`);
  const out: PcapPacket[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const caplen = u32(off + 8);
    const start = off + 16;
    if (start + caplen > buf.length) break; // a capture cut short: the last record is torn
    out.push({ time: u32(off) + u32(off + 4) / (nano ? 1e9 : 1e6), data: buf.subarray(start, start + caplen) });
    off = start + caplen;
  }
  return out;
}

export type FrameKind = 'WireGuard' | 'ESP-in-UDP' | 'ESP' | 'ARP' | 'IPv6 link-local' | 'registry' | 'plaintext' | 'other';

/** etcd's client port: the agents' registry traffic (control plane, not pod traffic). */
export const ETCD_CLIENT_PORT = 2379;
/** The Kubernetes API server's port: a lab whose nodes live in an API server (its control-plane address) serves it. */
export const KUBE_API_PORT = 6443;
const CONTROL_PLANE_PORTS = new Set([ETCD_CLIENT_PORT, KUBE_API_PORT]);

export interface FrameInfo {
  kind: FrameKind;
  /** Outer IP addresses, when it is IP. */
  src?: string;
  dst?: string;
  /** A short tcpdump-like description, for reports. */
  summary: string;
}

function ipv4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

const IP_PROTOCOLS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 50: 'ESP' };
/** ICMPv6 neighbour discovery and multicast listener messages carry no user data. */
const ICMP6_LINK_TYPES = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);
/** Router and neighbour solicitations and advertisements, redirects (RFC 4861). */
const ICMP6_ND_TYPES = new Set([133, 134, 135, 136, 137]);

/**
 * What one Ethernet frame on the underlay is. `nodeIPs` are the cluster's node addresses;
 * `registryIPs` its control plane's (TCP to or from etcd's client port or the API server's port there is
 * the agents' registry traffic).
 */
export function classifyFrame(frame: Buffer, nodeIPs: ReadonlySet<string>, registryIPs: ReadonlySet<string> = new Set()): FrameInfo {
  if (frame.length < 14) return { kind: 'other', summary: 'runt frame' };
  let etherType = frame.readUInt16BE(12);
  let l3 = 14;
  if (etherType === 0x8100 && frame.length >= 18) { etherType = frame.readUInt16BE(16); l3 = 18; }
  if (etherType === 0x0806) return { kind: 'ARP', summary: 'ARP' };
  if (etherType === 0x86dd) return classifyIpv6(frame, l3, nodeIPs, registryIPs);
  if (etherType !== 0x0800 || frame.length < l3 + 20) return { kind: 'other', summary: `ethertype 0x${etherType.toString(16)}` };
  const ihl = (frame[l3]! & 0x0f) * 4;
  const fragOffset = frame.readUInt16BE(l3 + 6) & 0x1fff;
  return classifyTransport(frame, { l4: l3 + ihl, proto: frame[l3 + 9]!, src: ipv4(frame, l3 + 12), dst: ipv4(frame, l3 + 16), fragOffset }, nodeIPs, registryIPs);
}

/** IPv6 extension headers that may precede the upper layer (hop-by-hop, routing, destination options). */
const IPV6_SKIPPED_HEADERS = new Set([0, 43, 60]);
const IPV6_FRAGMENT = 44;

/** An IPv6 frame: neighbour discovery and MLD are link housekeeping; the rest is judged as IPv4 is. */
function classifyIpv6(frame: Buffer, l3: number, nodeIPs: ReadonlySet<string>, registryIPs: ReadonlySet<string>): FrameInfo {
  if (frame.length < l3 + 40) return { kind: 'other', summary: 'IPv6 (truncated)' };
  const srcBytes = frame.subarray(l3 + 8, l3 + 24);
  const src = formatIp(srcBytes, 6), dst = formatIp(frame.subarray(l3 + 24, l3 + 40), 6);
  let next = frame[l3 + 6]!;
  let off = l3 + 40;
  let fragOffset = 0;
  while (IPV6_SKIPPED_HEADERS.has(next) && off + 2 <= frame.length) { next = frame[off]!; off += (frame[off + 1]! + 1) * 8; }
  if (next === IPV6_FRAGMENT && off + 8 <= frame.length) { fragOffset = frame.readUInt16BE(off + 2) >> 3; next = frame[off]!; off += 8; }
  if (next === 58 && fragOffset === 0 && off < frame.length) {
    const icmpType = frame[off]!;
    const srcLinkLocal = srcBytes[0] === 0xfe && (srcBytes[1]! & 0xc0) === 0x80;
    const srcUnspecified = srcBytes.every((x) => x === 0);
    // Neighbour discovery for a global address (a dual-stack underlay) comes from a global source too.
    if (ICMP6_LINK_TYPES.has(icmpType) && (srcLinkLocal || srcUnspecified || ICMP6_ND_TYPES.has(icmpType))) return { kind: 'IPv6 link-local', summary: `ICMPv6 type ${icmpType}` };
  }
  return classifyTransport(frame, { l4: off, proto: next, src, dst, fragOffset, v6: true }, nodeIPs, registryIPs);
}

/** Tunnel datagrams between node addresses, the registry's TCP, or plaintext (either family). */
function classifyTransport(frame: Buffer, ip: { l4: number; proto: number; src: string; dst: string; fragOffset: number; v6?: boolean },
  nodeIPs: ReadonlySet<string>, registryIPs: ReadonlySet<string>): FrameInfo {
  const { l4, proto, src, dst, fragOffset } = ip;
  const at = (a: string, port: number) => (ip.v6 ? `[${a}]:${port}` : `${a}:${port}`);
  const name = IP_PROTOCOLS[proto] ?? (ip.v6 && proto === 58 ? 'ICMPv6' : `proto ${proto}`);
  const betweenNodes = nodeIPs.has(src) && nodeIPs.has(dst);
  if (proto === 17 && fragOffset === 0 && frame.length >= l4 + 8) {
    const sport = frame.readUInt16BE(l4);
    const dport = frame.readUInt16BE(l4 + 2);
    const payload = frame.subarray(l4 + 8);
    const summary = `UDP ${at(src, sport)} > ${at(dst, dport)}`;
    if (betweenNodes && (sport === WG_PORT || dport === WG_PORT) && isWireGuardMessage(payload)) return { kind: 'WireGuard', src, dst, summary };
    if (betweenNodes && (sport === ESP_IN_UDP_PORT || dport === ESP_IN_UDP_PORT) && isEspInUdp(payload)) return { kind: 'ESP-in-UDP', src, dst, summary };
    return { kind: 'plaintext', src, dst, summary };
  }
  if (proto === 50 && betweenNodes && (fragOffset > 0 || (frame.length >= l4 + 8 && frame.readUInt32BE(l4) !== 0))) {
    return { kind: 'ESP', src, dst, summary: `ESP ${src} > ${dst}` };
  }
  if ((proto === 6) && frame.length >= l4 + 4) {
    const sport = frame.readUInt16BE(l4), dport = frame.readUInt16BE(l4 + 2);
    const summary = `TCP ${at(src, sport)} > ${at(dst, dport)}`;
    if ((registryIPs.has(src) && CONTROL_PLANE_PORTS.has(sport)) || (registryIPs.has(dst) && CONTROL_PLANE_PORTS.has(dport))) return { kind: 'registry', src, dst, summary };
    return { kind: 'plaintext', src, dst, summary };
  }
  return { kind: 'plaintext', src, dst, summary: `${name} ${src} > ${dst}` };
}

/** A WireGuard message: type 1-4 and three zero reserved bytes (whitepaper §5.4). */
export function isWireGuardMessage(p: Buffer): boolean {
  return p.length >= 32 && p[0]! >= 1 && p[0]! <= 4 && p[1] === 0 && p[2] === 0 && p[3] === 0;
}

/** ESP in UDP (RFC 3948): a non-zero SPI and at least SPI + sequence, or a NAT keepalive (0xff). */
export function isEspInUdp(p: Buffer): boolean {
  if (p.length === 1) return p[0] === 0xff;
  return p.length >= 8 && p.readUInt32BE(0) !== 0;
}

/** How many times `needle` occurs in `hay`. */
export function countOccurrences(hay: Buffer, needle: Buffer): number {
  let n = 0;
  for (let i = hay.indexOf(needle); i !== -1; i = hay.indexOf(needle, i + 1)) n++;
  return n;
}
