// The agent's ESP SAs seen the way Linux shows XFRM: `ip -s xfrm state` and `ip -s xfrm policy`
// text, the same entries as structured objects (-o json|yaml), and the SA table Wireshark/tshark
// read to decrypt a capture. Pure: it takes the agent's /ipsec/sas answer and returns text or data.
import type { IpsecSasReport } from '../agent/api.js';
import type { EspSaStatus } from '../datapath/messages.js';
import { ESP_IN_UDP_PORT } from '../esp/udp-encap.js';

export const IPSEC_REQID = 1;
const HIDDEN = '(hidden, use --show-keys)';

const spiHex = (spi: number): string => `0x${spi.toString(16).padStart(8, '0')}`;
const hexKey = (k: string | undefined): string => (k === undefined ? HIDDEN : `0x${k}`);

/** iproute2's time form (UTC here), `-` for never. */
function xfrmTime(ms: number): string {
  return ms ? new Date(ms).toISOString().slice(0, 19).replace('T', ' ') : '-';
}

/** Outbound first, then by peer address and SPI: a stable order to read and to diff. */
function sortSas(sas: EspSaStatus[]): EspSaStatus[] {
  return [...sas].sort((a, b) => (a.direction === b.direction ? 0 : a.direction === 'out' ? -1 : 1)
    || (a.direction === 'out' ? a.dst : a.src).localeCompare(b.direction === 'out' ? b.dst : b.src, 'en', { numeric: true })
    || a.spi - b.spi);
}

interface LifetimeCurrent { bytes: number; packets: number; add: string; use: string }

/** The lifetime block of both listings: no limits (veil expires SAs by rotation), then the counters. */
function lifetimeLines(c: LifetimeCurrent): string[] {
  return [
    '\tlifetime config:',
    '\t  limit: soft (INF)(bytes), hard (INF)(bytes)',
    '\t  limit: soft (INF)(packets), hard (INF)(packets)',
    '\t  expire add: soft 0(sec), hard 0(sec)',
    '\t  expire use: soft 0(sec), hard 0(sec)',
    '\tlifetime current:',
    `\t  ${c.bytes}(bytes), ${c.packets}(packets)`,
    `\t  add ${c.add} use ${c.use}`,
  ];
}

export interface XfrmStateEntry {
  src: string;
  dst: string;
  dir: 'in' | 'out';
  peer: string;
  active: boolean;
  proto: 'esp';
  spi: string;
  reqid: number;
  mode: 'tunnel';
  replayWindow: number;
  flags: string[];
  aead?: { name: string; key?: string; icvBits: number };
  authTrunc?: { name: string; key?: string; truncBits: number };
  enc?: { name: string; key?: string };
  /** ESP in UDP; absent for raw ESP (IP protocol 50). */
  encap?: { type: 'espinudp'; sport: number; dport: number };
  /** Highest sequence number sent (out) or accepted (in), ESN included. */
  sequence: number;
  lifetime: { current: LifetimeCurrent };
}

/** The SAs as `ip -s xfrm state` entries; key material only when the report carries it. */
export function xfrmStateEntries(report: IpsecSasReport): XfrmStateEntry[] {
  return sortSas(report.sas).map((sa) => {
    const e: XfrmStateEntry = {
      src: sa.src, dst: sa.dst, dir: sa.direction, peer: sa.peer, active: sa.active, proto: 'esp', spi: spiHex(sa.spi), reqid: IPSEC_REQID,
      mode: 'tunnel', replayWindow: sa.replayWindow, flags: sa.esn ? ['esn'] : [],
      ...(sa.encap === 'none' ? {} : { encap: { type: 'espinudp' as const, sport: ESP_IN_UDP_PORT, dport: ESP_IN_UDP_PORT } }), sequence: sa.sequence,
      lifetime: { current: { bytes: sa.bytes, packets: sa.packets, add: xfrmTime(sa.addTimeMs), use: xfrmTime(sa.useTimeMs) } },
    };
    if (sa.transform.aead) e.aead = { name: sa.transform.aead, ...(sa.key ? { key: sa.key.encryption } : {}), icvBits: sa.icvBits };
    else {
      e.authTrunc = { name: sa.transform.auth ?? '?', ...(sa.key?.authentication ? { key: sa.key.authentication } : {}), truncBits: sa.icvBits };
      e.enc = { name: sa.transform.enc ?? '?', ...(sa.key ? { key: sa.key.encryption } : {}) };
    }
    return e;
  });
}

/** `ip -s xfrm state` text. */
export function formatXfrmState(entries: XfrmStateEntry[]): string {
  const out: string[] = [];
  for (const e of entries) {
    const seqHi = Math.floor(e.sequence / 2 ** 32), seqLo = e.sequence % 2 ** 32;
    const x = (n: number) => `0x${n.toString(16)}`;
    out.push(`src ${e.src} dst ${e.dst}`);
    out.push(`\tproto esp spi ${e.spi}(${parseInt(e.spi, 16)}) reqid ${e.reqid}(0x${e.reqid.toString(16).padStart(8, '0')}) mode ${e.mode}`);
    out.push(`\treplay-window 0 flag ${e.flags.join(' ')} (0x00000010)`);
    if (e.aead) out.push(`\taead ${e.aead.name} ${hexKey(e.aead.key)} ${e.aead.icvBits}`);
    if (e.authTrunc) out.push(`\tauth-trunc ${e.authTrunc.name} ${hexKey(e.authTrunc.key)} ${e.authTrunc.truncBits}`);
    if (e.enc) out.push(`\tenc ${e.enc.name} ${hexKey(e.enc.key)}`);
    if (e.encap) out.push(`\tencap type ${e.encap.type} sport ${e.encap.sport} dport ${e.encap.dport} addr 0.0.0.0`);
    out.push(`\tdir ${e.dir} peer ${e.peer}${e.dir === 'out' ? (e.active ? ' (active)' : ' (standby)') : ''}`);
    out.push('\tanti-replay esn context:');
    out.push(e.dir === 'out' ? `\t seq-hi 0x0, seq 0x0, oseq-hi ${x(seqHi)}, oseq ${x(seqLo)}` : `\t seq-hi ${x(seqHi)}, seq ${x(seqLo)}, oseq-hi 0x0, oseq 0x0`);
    out.push(`\t replay_window ${e.replayWindow}, bitmap-length ${e.replayWindow / 32}`);
    out.push(...lifetimeLines(e.lifetime.current));
  }
  return out.length ? out.join('\n') + '\n' : '';
}

export interface XfrmPolicyEntry {
  src: string;
  dst: string;
  dir: 'out' | 'in' | 'fwd';
  peer: string;
  action: 'allow';
  lifetime: { current: LifetimeCurrent };
  /** Template: the tunnel the selector's traffic goes through. spi is the one in use (0: any). */
  tmpl: { src: string; dst: string; proto: 'esp'; spi: string; reqid: number; mode: 'tunnel' };
}

/**
 * The selectors, as `ip -s xfrm policy`: towards each peer, traffic from this node's pod CIDR to
 * each of the peer's prefixes goes out through the SA in use (dir out); the reverse arrives and is
 * forwarded to local pods (dir in, fwd) from the peer's tunnel, with any of its SPIs.
 */
export function xfrmPolicyEntries(report: IpsecSasReport): XfrmPolicyEntry[] {
  const out: XfrmPolicyEntry[] = [];
  const peers = [...report.peers].sort((a, b) => a.ip.localeCompare(b.ip, 'en', { numeric: true }));
  for (const p of peers) {
    const active = report.sas.find((s) => s.direction === 'out' && s.dst === p.ip && s.spi === p.activeSpi);
    const inbound = report.sas.filter((s) => s.direction === 'in' && s.src === p.ip);
    const sum = (sas: EspSaStatus[]) => ({
      bytes: sas.reduce((a, s) => a + s.bytes, 0), packets: sas.reduce((a, s) => a + s.packets, 0),
      add: xfrmTime(Math.min(...sas.map((s) => s.addTimeMs))), use: xfrmTime(Math.max(0, ...sas.map((s) => s.useTimeMs))),
    });
    for (const prefix of p.allowedIPs) {
      out.push({
        src: report.podCIDR, dst: prefix, dir: 'out', peer: p.name, action: 'allow', lifetime: { current: sum(active ? [active] : []) },
        tmpl: { src: report.internalIP, dst: p.ip, proto: 'esp', spi: spiHex(p.activeSpi), reqid: IPSEC_REQID, mode: 'tunnel' },
      });
      for (const dir of ['in', 'fwd'] as const) {
        out.push({
          src: prefix, dst: report.podCIDR, dir, peer: p.name, action: 'allow', lifetime: { current: sum(inbound) },
          tmpl: { src: p.ip, dst: report.internalIP, proto: 'esp', spi: spiHex(0), reqid: IPSEC_REQID, mode: 'tunnel' },
        });
      }
    }
  }
  return out;
}

/** `ip -s xfrm policy` text. */
export function formatXfrmPolicy(entries: XfrmPolicyEntry[]): string {
  const out: string[] = [];
  for (const e of entries) {
    out.push(`src ${e.src} dst ${e.dst} uid 0`);
    out.push(`\tdir ${e.dir} action ${e.action} priority 0 ptype main share any flag  (0x00000000)`);
    out.push(`\tpeer ${e.peer}`);
    out.push(...lifetimeLines(e.lifetime.current));
    out.push(`\ttmpl src ${e.tmpl.src} dst ${e.tmpl.dst}`);
    out.push(`\t\tproto ${e.tmpl.proto} spi ${e.tmpl.spi} reqid ${e.tmpl.reqid} mode ${e.tmpl.mode}`);
    out.push('\t\tlevel required share any');
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/** Wireshark's names for the algorithms (the values of its esp_sa UAT's algorithm columns). */
function wiresharkAlgorithms(sa: EspSaStatus): { encryption: string; authentication: string } {
  if (sa.transform.aead) return { encryption: `AES-GCM with ${sa.icvBits / 8} octet ICV [RFC4106]`, authentication: 'NULL' };
  const auth = sa.transform.auth === 'hmac(sha512)' ? 'HMAC-SHA-512-256 [RFC4868]' : 'HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]';
  return { encryption: 'AES-CBC [RFC3602]', authentication: auth };
}

/**
 * One esp_sa UAT record per SA, the eight quoted fields tshark 4.0 reads: protocol, source,
 * destination, SPI, encryption algorithm, encryption key, authentication algorithm, its key.
 * The report must carry the keys (showKeys).
 */
export function wiresharkSaRecords(report: IpsecSasReport): string[] {
  return sortSas(report.sas).map((sa) => {
    if (!sa.key) throw new Error(`the SA ${sa.src} -> ${sa.dst} spi ${sa.spi} came without its key`);
    const alg = wiresharkAlgorithms(sa);
    const family = sa.src.includes(':') ? 'IPv6' : 'IPv4';
    const authKey = sa.key.authentication ? `0x${sa.key.authentication}` : '';
    return [family, sa.src, sa.dst, spiHex(sa.spi), alg.encryption, `0x${sa.key.encryption}`, alg.authentication, authKey]
      .map((f) => `"${f}"`).join(',');
  });
}

/** Options for the tshark command line, one per line, shell-quoted: `tshark -r x.pcap $(...)` needs eval; copy-paste works. */
export function wiresharkOptionLines(records: string[]): string {
  const lines = ['-o esp.enable_encryption_decode:TRUE', ...records.map((r) => `-o 'uat:esp_sa:${r}'`)];
  return lines.join('\n') + '\n';
}

/** The esp_sa file of a Wireshark profile (or the personal configuration directory). */
export function wiresharkUatFile(records: string[]): string {
  return ['# This file is automatically generated, DO NOT MODIFY.', ...records].join('\n') + '\n';
}
