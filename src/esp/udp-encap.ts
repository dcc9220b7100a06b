// ESP in UDP (RFC 3948) on port 4500: the UDP payload starts with the SPI. A zero "non-ESP marker"
// means IKE (which veil does not speak: dropped and counted), a single 0xFF byte is a NAT keepalive
// (ignored, counted apart).
import { decodeEsp, type EspDecodeResult, type EspDropCounters } from './esp-decoder.js';
import { readEspSpi } from './esp-packet.js';
import type { InboundSaTable } from './security-association.js';

/** The one port of ESP in UDP, both ends (veil's sockets, captures, status). */
export const ESP_IN_UDP_PORT = 4500;

export type UdpEncapKind = 'esp' | 'ike' | 'keepalive' | 'truncated';

/** What the UDP payload at buf[off..off+len) carries (RFC 3948 §2.2, 2.3). Allocation-free. */
export function classifyUdpEncap(buf: Uint8Array, off = 0, len = buf.length - off): UdpEncapKind {
  if (len === 1 && buf[off] === 0xff) return 'keepalive';
  if (len >= 4 && readEspSpi(buf, off) === 0) return 'ike';
  if (len < 8) return 'truncated';
  return 'esp';
}

/** One UDP datagram received on port 4500 from `srcIp`: classify, find the SA by (source, SPI), decode. */
export function decodeEspInUdp(
  table: InboundSaTable, srcIp: string, payload: Uint8Array, nowMs: number, drops: EspDropCounters,
): EspDecodeResult {
  const kind = classifyUdpEncap(payload);
  if (kind !== 'esp') {
    drops[kind]++;
    return { ok: false, reason: kind };
  }
  return decodeEsp(table.lookup(srcIp, readEspSpi(payload)), payload, nowMs, drops);
}
