// The kernel VM as one more member of a lab: its tap is a port of the lab's underlay bridge (in the
// lab's fabric namespace), its QEMU is recorded with the lab's pids (so `lab down` stops it if a
// test dies first), and the tests around it share a few small tools: captures on its tap, and
// the check that QEMU can run here at all (the only reason a kernel test may skip).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerPid } from '../../src/lab/pids.js';
import { FABRIC_BRIDGE, fabricNetns } from '../../src/lab/names.js';
import { KernelVm } from './kernel-vm.js';
import { qemuMissing } from './image.js';

/** Boots the VM on the lab's underlay at `address` (with prefix). */
export function bootLabVm(cluster: string, address: string): Promise<KernelVm> {
  return KernelVm.boot({
    netns: fabricNetns(cluster), tap: 'veil-kvmtap0', bridge: FABRIC_BRIDGE, address,
    onPid: (pid) => registerPid(cluster, 'kernel-vm', pid),
  });
}

/** Why the kernel tests skip here, logged loudly; undefined where QEMU runs. */
export function skipReason(): string | undefined {
  const why = qemuMissing();
  if (why) console.log(`# SKIPPING the kernel VM tests: ${why}`);
  return why;
}

/** tcpdump on the VM's tap (the lab's fabric namespace); stop() returns the frames tshark reads. */
/** Link-local housekeeping (ARP, IPv6 neighbour discovery and MLD from link-local addresses), never data. */
export function linkControl(frame: string[]): boolean {
  return frame[0] === 'eth:ethertype:arp' || (/^eth:ethertype:ipv6(:ipv6\.hopopts)?:icmpv6$/.test(frame[0]!) && /^(fe80:|::$)/.test(frame[5] ?? ''));
}

export class TapCapture {
  private constructor(private readonly file: string, private readonly proc: ChildProcess, private readonly exited: Promise<void>) {}

  static async start(cluster: string, dir: string, filter: string[] = []): Promise<TapCapture> {
    const file = join(dir, `tap-${Date.now()}.pcap`);
    const proc = spawn('ip', ['netns', 'exec', fabricNetns(cluster), 'tcpdump', '-n', '-U', '--immediate-mode', '-s', '0', '-i', 'veil-kvmtap0', '-w', file, ...filter], { stdio: ['ignore', 'ignore', 'pipe'] });
    registerPid(cluster, 'kernel-vm-capture', proc.pid!);
    const exited = new Promise<void>((r) => proc.on('exit', () => r()));
    await new Promise<void>((res, rej) => {
      let err = '';
      const t = setTimeout(() => rej(new Error(`tcpdump did not start: ${err}`)), 15_000);
      proc.stderr!.on('data', (d) => { err += d; if (err.includes('listening on')) { clearTimeout(t); res(); } });
      proc.on('exit', () => { clearTimeout(t); rej(new Error(`tcpdump exited: ${err}`)); });
    });
    return new TapCapture(file, proc, exited);
  }

  /** Each frame as [protocols, src, dst, sport, dport, ipv6 src] (tshark fields), and the raw pcap. */
  async stop(): Promise<{ frames: string[][]; pcap: Buffer }> {
    await new Promise((r) => setTimeout(r, 300));
    this.proc.kill('SIGINT');
    await this.exited;
    const r = spawnSync('tshark', ['-r', this.file, '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.protocols', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'ipv6.src'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tshark: ${r.stderr}`);
    return { frames: r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')), pcap: readFileSync(this.file) };
  }
}
