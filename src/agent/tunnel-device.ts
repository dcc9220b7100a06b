// The node's tunnel device: a persistent TUN (it outlives the agent, so its routes survive a
// restart and packets wait in the kernel instead of leaking), its MTU, and the node's health
// address on it (the pod gateway, so probes and node-originated tunnel traffic have a source).
import { TunDevice } from '../datapath/tun-device.js';
import { mustRun, run } from '../util/exec.js';

export interface TunnelDeviceOptions {
  name: string;
  mtu: number;
  /** An address of this node inside the tunnel (its pod gateway), /32 or /128. */
  address: string;
}

export function openTunnelDevice(opts: TunnelDeviceOptions): TunDevice {
  // vnetHdr + TSO: the kernel hands over 64 KiB TCP super-packets (one read instead of ~45), which
  // readBatch splits into <= MTU packets for the engines. A persistent device created without the
  // header takes the new flags when reattached (TUNSETIFF updates IFF_VNET_HDR).
  const tun = TunDevice.open(opts.name, { persist: true, vnetHdr: true });
  configureTunnelDevice(opts);
  return tun;
}

/**
 * The device's MTU, state, address and queue length (also for a queue handed over by the agent
 * before: the settings may have changed). The queue holds what is routed into the device while no
 * datapath reads it (a datapath handover): at 10,000 it holds seconds of a busy node's pings.
 */
export function configureTunnelDevice(opts: TunnelDeviceOptions): void {
  // No IPv6 link-local address (set before the first up): with one the kernel sends router
  // solicitations and MLD reports into the device seconds after it comes up. veil routes none of
  // them (noRoute), but they woke the datapath and were the first IPv6 packets its code saw: V8
  // deoptimized the packet path (the trie's IPv6 walk, fromTunnel's noRoute), and it ran as
  // baseline code for ~8-10 s of a lone-packet flow. Pod IPv6 routes need no link-local address.
  run(['ip', 'link', 'set', 'dev', opts.name, 'addrgenmode', 'none']);
  mustRun(['ip', 'link', 'set', 'dev', opts.name, 'mtu', String(opts.mtu), 'txqueuelen', String(TUNNEL_QUEUE_LENGTH), 'up']);
  // IPv6 (a node with an IPv6 pod CIDR alone): no duplicate address detection, the probes bind it at once.
  mustRun(['ip', 'addr', 'replace', ...(opts.address.includes(':') ? [`${opts.address}/128`, 'dev', opts.name, 'nodad'] : [`${opts.address}/32`, 'dev', opts.name])]);
  // Decrypted packets come in with remote pod sources; strict reverse-path filtering must not drop them.
  run(['sysctl', '-q', '-w', `net.ipv4.conf.${opts.name}.rp_filter=0`]);
}

/** Packets the TUN device queues for its reader (ip link txqueuelen; the kernel's default is 500). */
export const TUNNEL_QUEUE_LENGTH = 10_000;
